"""Parity of exported artifacts with the PyTorch fp32 model: the held-out set, the metrics, the
gates and the printed table.

Every artifact is run clip by clip (batch 1, as on the device) over the same held-out set, and
compared with the PyTorch fp32 logits for the same clips:

* ``max_abs_diff``   max |logit - reference logit| over all clips and classes
* ``top1_agreement`` fraction of clips whose argmax equals the reference argmax
* ``accuracy`` / ``weighted_f1`` against the clips' labels, and their deltas vs the reference
* ``latency_ms``     median single-thread time of one forward pass on one clip's features

Gates: fp32 artifacts must match to ``max_abs_diff <= 1e-4`` with 100 % top-1 agreement; int8
artifacts need ``>= 98 %`` top-1 agreement and lose at most 1 point of weighted F1.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ser_edge.evaluate import compute_metrics
from ser_edge.runtime.errors import SerEdgeError
from ser_edge.runtime.features import FeatureConfig, extract, normalise

from .common import SELFTEST_SECONDS, speechlike
from .errors import ExportError

#: ``(1, T, F) float32, (1,) int64 -> (1, C) float32``
Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]

GATES: Dict[str, float] = {
    "fp32_max_abs_diff": 1e-4,
    "fp32_min_top1_agreement": 1.0,
    "int8_min_top1_agreement": 0.98,
    "int8_max_weighted_f1_drop": 0.01,
}
LATENCY_REPEATS = 7


@dataclass
class EvalSet:
    """Held-out clips as model input. ``features[i]``: ``(T_i, n_features) float32`` (normalised);
    ``labels``: ``(n,) int64`` class ids; ``waveform``: optional clip for the embedded self-test."""

    features: List[np.ndarray]
    labels: np.ndarray
    source: str
    synthetic: bool
    waveform: Optional[np.ndarray] = None
    notes: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if not self.features or len(self.features) != len(self.labels):
            raise ExportError(f"held-out set {self.source!r}: needs >= 1 clip and one label per clip")
        if any(f.ndim != 2 or f.shape[0] < 1 for f in self.features):
            raise ExportError(f"held-out set {self.source!r}: every clip must be (n_frames >= 1, n_features)")

    def describe(self) -> Dict[str, object]:
        lengths = [f.shape[0] for f in self.features]
        return {"source": self.source, "synthetic": self.synthetic, "n_clips": len(self.features),
                "frames_min": min(lengths), "frames_median": int(np.median(lengths)),
                "frames_max": max(lengths), "notes": list(self.notes)}

    def latency_clip(self) -> int:
        """Index of the median-length clip (what latency is measured on)."""
        order = np.argsort([f.shape[0] for f in self.features], kind="stable")
        return int(order[len(order) // 2])


# --------------------------------------------------------------------------------------------
# Held-out sets
# --------------------------------------------------------------------------------------------

def synthetic_eval_set(fcfg: FeatureConfig, n_classes: int, per_class: int = 6) -> EvalSet:
    """Deterministic speech-like clips whose pitch, syllable rate and brightness depend on the
    class, 0.6-2.6 s long, run through the real feature pipeline. Labels are synthetic: accuracy
    and F1 say nothing about emotion recognition, only their deltas between formats matter."""
    feats, labels = [], []
    for c in range(n_classes):
        for j in range(per_class):
            seconds = 0.6 + ((c * per_class + j) * 0.37) % 2.0
            y = speechlike(seconds, fcfg.sample_rate, f0=100.0 + 25.0 * c + 7.0 * j,
                           syllable_hz=2.0 + 0.5 * c, n_harmonics=6 + c % 8, seed=c * per_class + j)
            feats.append(extract(y, fcfg))
            labels.append(c)
    return EvalSet(feats, np.array(labels), f"synthetic ({n_classes} classes x {per_class} speech-like clips)",
                   True, speechlike(SELFTEST_SECONDS, fcfg.sample_rate),
                   ["synthetic held-out set: pass --data/--root for accuracy on real speech"])


def eval_set_from_utterances(utts: Sequence, fcfg: FeatureConfig, labels: Sequence[str],
                             source: str, cache_dir: Optional[str] = None) -> EvalSet:
    """Features for ``utts`` (``ser_edge.data.Utterance``) through ``FeatureStore``; clips whose
    label the model does not know, or that cannot be read, are skipped and noted."""
    from ser_edge.data import FeatureStore

    store = FeatureStore(fcfg, cache_dir)
    index = {name: i for i, name in enumerate(labels)}
    feats, ys, kept, notes = [], [], [], []
    unknown = sorted({u.label for u in utts if u.label not in index})
    if unknown:
        notes.append(f"skipped clips with labels the model does not know: {unknown}")
    for u in utts:
        if u.label not in index:
            continue
        try:
            raw = store.features(u)
        except SerEdgeError as e:  # unreadable audio is reported, never a crash
            notes.append(f"skipped {u.path}: {e}")
            continue
        if raw.shape[0] < 1:
            notes.append(f"skipped {u.path}: no frames")
            continue
        feats.append(normalise(raw, fcfg))
        ys.append(index[u.label])
        kept.append(u)
    if not feats:
        raise ExportError(f"held-out set {source!r}: no usable clips ({'; '.join(notes) or 'empty'}; "
                          f"the model's labels are {list(labels)})")
    return EvalSet(feats, np.array(ys), source, False, _middle(store.waveform(kept[0]), fcfg), notes)


def eval_set_from_corpus(name: str, root: str, fcfg: FeatureConfig, labels: Sequence[str],
                         extra: Dict, cache_dir: Optional[str] = None) -> EvalSet:
    """The checkpoint's test speakers of corpus ``name`` at ``root``. ``extra`` is the
    checkpoint's ``extra``; its ``split`` (``{"train": [...], "val": [...], "test": [...]}``
    speaker ids, as ``ser_edge.train`` records it) picks the test speakers; with an empty test
    part its validation speakers, and without a recorded split the default
    ``speaker_split(seed=0)`` test speakers (both noted in the report)."""
    from ser_edge.data import load_corpus, speaker_split

    utts = load_corpus(name, root)
    split = extra.get("split") if isinstance(extra, dict) else None
    notes = []
    if isinstance(split, dict) and split.get("test"):
        speakers = sorted(str(s) for s in split["test"])
    elif isinstance(split, dict) and split.get("val"):
        speakers = sorted(str(s) for s in split["val"])
        notes.append("checkpoint's split has no test speakers: used its validation speakers")
    else:
        speakers = sorted({u.speaker for u in speaker_split(utts, seed=0).test})
        notes.append("checkpoint records no split: used speaker_split(seed=0) test speakers, "
                     "which may overlap the speakers it was trained on")
    test = [u for u in utts if str(u.speaker) in speakers]
    if not test:
        raise ExportError(f"{name} at {root}: none of the test speakers {speakers} is in the corpus")
    ev = eval_set_from_utterances(test, fcfg, labels, f"{name} test speakers {', '.join(speakers)}", cache_dir)
    ev.notes[:0] = notes
    return ev


def _middle(y: np.ndarray, fcfg: FeatureConfig) -> np.ndarray:
    """The middle :data:`SELFTEST_SECONDS` of a clip (RAVDESS clips start and end in silence)."""
    n = int(SELFTEST_SECONDS * fcfg.sample_rate)
    start = max(0, (len(y) - n) // 2)
    return np.asarray(y[start:start + n], dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------

def label_scores(labels: np.ndarray, logits: np.ndarray) -> Tuple[float, float]:
    """``(accuracy, weighted F1)`` of ``(n, C)`` logits against ``(n,)`` class ids, computed by the
    same code as the training reports (:func:`ser_edge.evaluate.compute_metrics`)."""
    n_classes = logits.shape[1]
    m = compute_metrics(labels, logits.argmax(axis=1), [str(c) for c in range(n_classes)])
    return m.accuracy, m.weighted_f1


def run_clips(runner: Runner, ev: EvalSet) -> np.ndarray:
    """Logits for every clip, one at a time. ``-> (n_clips, n_classes) float32``."""
    rows = [runner(f[None], np.array([f.shape[0]], dtype=np.int64))[0] for f in ev.features]
    return np.stack(rows).astype(np.float32)


def latency_ms(runner: Runner, features: np.ndarray, repeats: int = LATENCY_REPEATS) -> float:
    """Median wall time (ms) of one forward pass on ``features`` ``(T, F)``, after a warm-up."""
    x, n = features[None], np.array([features.shape[0]], dtype=np.int64)
    runner(x, n)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner(x, n)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


# --------------------------------------------------------------------------------------------
# Results and gates
# --------------------------------------------------------------------------------------------

@dataclass
class ReferenceResult:
    """PyTorch fp32 on the held-out set."""

    accuracy: float
    weighted_f1: float
    latency_ms: float
    n_clips: int


@dataclass
class ArtifactResult:
    """One exported file and its parity with the reference."""

    name: str
    format: str
    precision: str  # "fp32" | "int8"
    path: Optional[str]  # final path once published; None when a gate kept it unpublished
    size_bytes: int
    evaluated: bool = False
    max_abs_diff: Optional[float] = None
    top1_agreement: Optional[float] = None
    accuracy: Optional[float] = None
    accuracy_delta: Optional[float] = None
    weighted_f1: Optional[float] = None
    weighted_f1_delta: Optional[float] = None
    latency_ms: Optional[float] = None
    gate: str = "n/a"  # "pass" | "fail" | "n/a" (not evaluated, or a sidecar)
    role: str = "model"  # or "metadata sidecar" (TFLite's .json)
    failures: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


def compare(result: ArtifactResult, logits: np.ndarray, ref_logits: np.ndarray, labels: np.ndarray,
            ref: ReferenceResult, latency: float) -> ArtifactResult:
    """Fill ``result``'s metrics from the artifact's ``(n, C)`` logits and apply its gate."""
    if logits.shape != ref_logits.shape:
        raise ExportError(f"{result.name}: logits of shape {logits.shape}, reference {ref_logits.shape}")
    pred = logits.argmax(axis=1)
    result.evaluated = True
    result.max_abs_diff = float(np.max(np.abs(logits - ref_logits)))
    result.top1_agreement = float(np.mean(pred == ref_logits.argmax(axis=1)))
    result.accuracy, result.weighted_f1 = label_scores(labels, logits)
    result.accuracy_delta = result.accuracy - ref.accuracy
    result.weighted_f1_delta = result.weighted_f1 - ref.weighted_f1
    result.latency_ms = latency
    result.failures = gate_failures(result)
    result.gate = "fail" if result.failures else "pass"
    return result


def gate_failures(r: ArtifactResult) -> List[str]:
    """Why ``r`` fails its precision's gate (empty when it passes)."""
    out: List[str] = []
    if r.max_abs_diff is None or r.top1_agreement is None or r.weighted_f1_delta is None:
        return ["not evaluated"]
    if r.precision == "fp32":
        if not r.max_abs_diff <= GATES["fp32_max_abs_diff"]:  # `not <=` also catches NaN
            out.append(f"max |logit diff| {r.max_abs_diff:.3g} > {GATES['fp32_max_abs_diff']:g}")
        if r.top1_agreement < GATES["fp32_min_top1_agreement"]:
            out.append(f"top-1 agreement {r.top1_agreement:.1%} < {GATES['fp32_min_top1_agreement']:.0%}")
    else:
        if r.top1_agreement < GATES["int8_min_top1_agreement"]:
            out.append(f"top-1 agreement {r.top1_agreement:.1%} < {GATES['int8_min_top1_agreement']:.0%}")
        if -r.weighted_f1_delta > GATES["int8_max_weighted_f1_drop"]:
            out.append(f"weighted-F1 drop {-100 * r.weighted_f1_delta:.2f} points > "
                       f"{100 * GATES['int8_max_weighted_f1_drop']:g}")
    return out


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def format_table(ref: ReferenceResult, results: Sequence[ArtifactResult]) -> str:
    """The parity table printed by ``ser-edge export``."""
    head = ("artifact", "prec", "size", "max|dlogit|", "top-1", "acc (delta)", "wF1 (delta)", "latency", "gate")
    rows = [("pytorch (reference)", "fp32", "-", "-", "-", f"{ref.accuracy:.3f}", f"{ref.weighted_f1:.3f}",
             f"{ref.latency_ms:.2f} ms", "-")]
    for r in results:
        if not r.evaluated:
            blank = "(sidecar)" if r.role != "model" else "-"
            rows.append((r.name, r.precision, _size(r.size_bytes), blank, "-", "-", "-", "-", r.gate))
            continue
        rows.append((r.name, r.precision, _size(r.size_bytes), f"{r.max_abs_diff:.2e}", f"{r.top1_agreement:.1%}",
                     f"{r.accuracy:.3f} ({r.accuracy_delta:+.3f})", f"{r.weighted_f1:.3f} ({r.weighted_f1_delta:+.3f})",
                     f"{r.latency_ms:.2f} ms", r.gate))
    widths = [max(len(str(row[i])) for row in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        for msg in r.failures:
            lines.append(f"  {r.name}: {msg}")
    return "\n".join(lines)
