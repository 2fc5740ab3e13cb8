"""Speaker-disjoint cross-validation: the honest estimate of accuracy on voices a model never heard.

Folds: the corpus's speakers, sorted naturally (``Actor_2`` before ``Actor_10``), are dealt
round-robin into ``k`` folds (``--folds 5``: for RAVDESS fold 1 tests actors 1, 6, 11, 16, 21),
or one fold per speaker (``loso``), or explicit lists (``"A,B;C,D"``). Each fold trains on the
other speakers; its validation speakers (for early stopping / best-epoch selection) are taken
from those *training* speakers, never from its test speakers. Assignment is deterministic and
printed and saved.

Layout of ``out_dir``::

    folds.json                  the fold assignment (test and validation speakers per fold)
    r{repeat}_f{fold}/          an ordinary ``ser-edge train`` run (best.pt, last.pt, history.json)
    r{repeat}_f{fold}/fold.json that fold's finished result; a rerun keeps finished folds
    cv.json                     summary: per fold, mean +- std, pooled confusion matrix, command, recipe
    cv_confusion.png            pooled confusion matrix of all test predictions

A killed CV resumes where it stopped: finished folds are read back, an interrupted fold resumes
from its ``last.pt``. One :class:`~ser_edge.data.FeatureStore` (and its disk cache) serves all folds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ser_edge.config import TrainConfig, TrainError, describe
from ser_edge.data import DataError, FeatureStore, Utterance, load_corpus
from ser_edge.evaluate import Metrics, compute_metrics, metrics_from_cm, plot_confusion
from ser_edge.runtime.io import atomic_write_json, atomic_write_text

FOLD_RESULT = "fold.json"


@dataclass
class CVOptions:
    folds: str = "5"  # k, "loso", or "A,B;C,D"
    repeats: int = 1  # seeds seed, seed + 1, ...
    val_per_fold: int = 2  # validation speakers from each fold's training speakers
    int8: bool = False  # also score each fold's model after ONNX int8 quantisation
    recipe: Optional[str] = None  # informative: the recipe the config came from


def natural_key(s: str) -> List[Any]:
    """``"Actor_10"`` sorts after ``"Actor_9"``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def make_folds(speakers: Sequence[str], spec: str) -> List[List[str]]:
    """Test speakers of each fold. ``spec``: ``"k"``, ``"loso"`` or ``"A,B;C,D;..."``.
    Raises :class:`DataError` for a spec the speakers cannot satisfy."""
    known = sorted(set(speakers), key=natural_key)
    spec = spec.strip()
    if spec.lower() == "loso":
        return [[s] for s in known]
    if spec.isdigit():
        k = int(spec)
        if not 2 <= k <= len(known):
            raise DataError(f"--folds {k}: need 2 <= k <= the number of speakers ({len(known)})")
        return [known[i::k] for i in range(k)]
    folds = [[s.strip() for s in part.split(",") if s.strip()] for part in spec.split(";") if part.strip()]
    unknown = sorted({s for f in folds for s in f} - set(known))
    if unknown or len(folds) < 2:
        raise DataError(f"--folds {spec!r}: " + (f"unknown speakers {', '.join(unknown)}" if unknown
                                                  else "give at least two folds"))
    flat = [s for f in folds for s in f]
    if len(flat) != len(set(flat)):
        raise DataError(f"--folds {spec!r}: a speaker appears in two folds")
    return folds


def pick_val(train_speakers: Sequence[str], n: int, fold: int) -> List[str]:
    """``n`` validation speakers from a fold's training speakers: ``n`` neighbours in natural
    order, starting ``fold * n`` places further for each fold, so different folds validate on
    different voices."""
    ordered = sorted(train_speakers, key=natural_key)
    if n <= 0:
        return []
    if n >= len(ordered):
        raise DataError(f"{n} validation speakers requested but a fold has only {len(ordered)} training speakers")
    start = (fold * n) % len(ordered)
    return [ordered[(start + i) % len(ordered)] for i in range(n)]


@dataclass
class FoldResult:
    fold: int
    repeat: int
    seed: int
    test_speakers: List[str]
    val_speakers: List[str]
    metrics: Dict[str, Any]  # accuracy, uar, weighted_f1, n, confusion_matrix, best_epoch
    int8: Optional[Dict[str, Any]] = None
    adapted: Optional[Dict[str, Any]] = None
    seconds: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class CVSummary:
    labels: List[str]
    folds: List[FoldResult]
    config: Dict[str, Any]
    command: str
    extra: Dict[str, Any] = field(default_factory=dict)

    def _values(self, key: str, part: str = "metrics") -> np.ndarray:
        return np.array([getattr(f, part)[key] for f in self.folds if getattr(f, part)], dtype=np.float64)

    def stats(self, part: str = "metrics") -> Dict[str, float]:
        """Mean and std (population, over fold runs) of UAR, accuracy and weighted F1."""
        out = {}
        for key in ("uar", "accuracy", "weighted_f1"):
            v = self._values(key, part)
            if v.size:
                out[f"{key}_mean"], out[f"{key}_std"] = float(v.mean()), float(v.std())
        return out

    def pooled_confusion(self, part: str = "metrics") -> np.ndarray:
        return np.sum([np.array(getattr(f, part)["confusion_matrix"]) for f in self.folds if getattr(f, part)], axis=0)

    def to_dict(self) -> Dict[str, Any]:
        s = self.stats()
        d: Dict[str, Any] = {
            "labels": self.labels, "n_folds": len({f.fold for f in self.folds}),
            "repeats": len({f.repeat for f in self.folds}),
            "uar_mean": s.get("uar_mean"), "uar_std": s.get("uar_std"),
            "accuracy_mean": s.get("accuracy_mean"), "accuracy_std": s.get("accuracy_std"),
            "weighted_f1_mean": s.get("weighted_f1_mean"), "weighted_f1_std": s.get("weighted_f1_std"),
            "pooled": metrics_from_cm(self.pooled_confusion(), self.labels).to_dict(),
            "folds": [f.to_dict() for f in self.folds],
            "command": self.command, "recipe": self.config,
        }
        for part in ("int8", "adapted"):
            if any(getattr(f, part) for f in self.folds):
                d[part] = self.stats(part)
                if part == "int8":
                    d[part]["max_uar_drop"] = float(max(f.metrics["uar"] - f.int8["uar"] for f in self.folds if f.int8))
        d.update(self.extra)
        return d

    def table(self) -> str:
        """A plain-text table: one row per fold run, then mean +- std."""
        rows = [f"{'fold':>4} {'seed':>5} {'UAR':>6} {'acc':>6} {'wF1':>6}"
                + ("  int8 UAR" if any(f.int8 for f in self.folds) else "")
                + ("  adapted UAR" if any(f.adapted for f in self.folds) else "") + "  test speakers"]
        for f in self.folds:
            m = f.metrics
            rows.append(f"{f.fold + 1:>4} {f.seed:>5} {m['uar']:6.3f} {m['accuracy']:6.3f} {m['weighted_f1']:6.3f}"
                        + (f"  {f.int8['uar']:9.3f}" if f.int8 else "")
                        + (f"  {f.adapted['uar']:12.3f}" if f.adapted else "")
                        + "  " + ",".join(f.test_speakers))
        s = self.stats()
        rows.append(f"mean UAR {s['uar_mean']:.3f} +- {s['uar_std']:.3f}, accuracy {s['accuracy_mean']:.3f} "
                    f"+- {s['accuracy_std']:.3f}, weighted F1 {s['weighted_f1_mean']:.3f} +- {s['weighted_f1_std']:.3f}"
                    f" ({len(self.folds)} fold runs)")
        for part, name in (("int8", "int8 ONNX"), ("adapted", "speaker-adapted (per-speaker normalisation)")):
            if any(getattr(f, part) for f in self.folds):
                p = self.stats(part)
                rows.append(f"{name}: mean UAR {p['uar_mean']:.3f} +- {p['uar_std']:.3f}")
        return "\n".join(rows)


def _metrics_dict(m: Metrics) -> Dict[str, Any]:
    return {"uar": m.uar, "accuracy": m.accuracy, "weighted_f1": m.weighted_f1, "n": m.n,
            "confusion_matrix": m.confusion.tolist(),
            "recall": {lab: v["recall"] for lab, v in m.per_class.items()}}


def _command() -> str:
    argv = [os.path.basename(sys.argv[0])] + sys.argv[1:]
    return " ".join(argv)


def run_cv(cfg: TrainConfig, opts: CVOptions, json_out: Optional[str] = None,
           log: Optional[Callable[[str], None]] = None) -> CVSummary:
    """Cross-validate ``cfg`` (its ``out_dir`` holds the folds). See the module docstring.
    Raises :class:`DataError` / :class:`TrainError` for unusable data or settings."""
    from ser_edge.train import train

    say = log or ((lambda m: print(m, file=sys.stderr, flush=True)) if cfg.progress else (lambda m: None))
    cfg.validate()
    utts = load_corpus(cfg.data, os.fspath(cfg.root))
    folds = make_folds([u.speaker for u in utts], opts.folds)
    out = os.fspath(cfg.out_dir)
    os.makedirs(out, exist_ok=True)
    store = FeatureStore(cfg.feature_config(), cfg.cache_dir)
    plan = []
    speakers = sorted({u.speaker for u in utts}, key=natural_key)
    for k, test in enumerate(folds):
        val = pick_val([s for s in speakers if s not in test], opts.val_per_fold, k)
        plan.append({"fold": k + 1, "test_speakers": test, "val_speakers": val})
    _check_plan(out, plan, cfg)
    atomic_write_json(os.path.join(out, "folds.json"), {"folds": plan, "config": cfg.to_dict()})
    say(f"cv: {len(folds)} folds x {opts.repeats} repeat(s) over {len(speakers)} speakers -> {out}")
    for p in plan:
        say(f"  fold {p['fold']}: test {','.join(p['test_speakers'])}; val {','.join(p['val_speakers']) or '-'}")
    if opts.val_per_fold == 0 and cfg.select == "best":
        raise TrainError("no validation speakers per fold: train a fixed number of epochs with --select last")

    results: List[FoldResult] = []
    labels: List[str] = []
    for r in range(opts.repeats):
        for k, p in enumerate(plan):
            run_dir = os.path.join(out, f"r{r + 1}_f{k + 1}")
            done = os.path.join(run_dir, FOLD_RESULT)
            if os.path.exists(done):
                with open(done, encoding="utf-8") as f:
                    saved = json.load(f)
                labels = saved.pop("labels")
                fr = FoldResult(**saved)
                if opts.int8 and fr.int8 is None:  # asked for now, not when the fold ran: score its model
                    fr.int8 = _metrics_dict(int8_metrics(os.path.join(run_dir, "best.pt"), store, utts,
                                                         p["test_speakers"]))
                    atomic_write_json(done, dict(fr.to_dict(), labels=labels))
                results.append(fr)
                say(f"fold {k + 1} repeat {r + 1}: finished earlier, UAR {fr.metrics['uar']:.3f}"
                    + (f" (int8 {fr.int8['uar']:.3f})" if fr.int8 else ""))
                continue
            t0 = time.monotonic()
            fold_cfg = cfg.replace(out_dir=run_dir, test_speakers=tuple(p["test_speakers"]),
                                   val_speakers=tuple(p["val_speakers"]) or None, seed=cfg.seed + r,
                                   ratios=(1.0, 0.0, 0.0), resume=os.path.exists(os.path.join(run_dir, "last.pt")),
                                   overwrite=False)
            say(f"fold {k + 1}/{len(plan)} repeat {r + 1}/{opts.repeats}: training")
            result = train(fold_cfg, utts=utts, store=store,
                           log=(lambda m, k=k: say(f"  [f{k + 1}] {m}")) if cfg.progress else (lambda m: None))
            if result.test is None:
                raise TrainError(f"fold {k + 1}: no test utterances")
            labels = result.labels
            test = result.test
            adapted = None
            if cfg.features.speaker_norm:
                # result.test used each test speaker's own statistics (enrolment on their unlabelled
                # clips); the headline number is the model as it runs without enrolment.
                adapted = _metrics_dict(test)
                test = population_metrics(result.best_path, store, utts, p["test_speakers"])
            fr = FoldResult(fold=k, repeat=r, seed=cfg.seed + r, test_speakers=p["test_speakers"],
                            val_speakers=p["val_speakers"], adapted=adapted,
                            metrics=dict(_metrics_dict(test), best_epoch=result.best_epoch))
            if opts.int8:
                fr.int8 = _metrics_dict(int8_metrics(result.best_path, store, utts, p["test_speakers"]))
            fr.seconds = time.monotonic() - t0
            atomic_write_json(done, dict(fr.to_dict(), labels=labels))
            results.append(fr)
            say(f"fold {k + 1} repeat {r + 1}: test UAR {fr.metrics['uar']:.3f} "
                + (f"(int8 {fr.int8['uar']:.3f}) " if fr.int8 else "")
                + (f"(adapted {fr.adapted['uar']:.3f}) " if fr.adapted else "") + f"in {fr.seconds:.0f}s")
    summary = CVSummary(labels, results, config=_recipe_record(cfg, opts), command=_command())
    write_summary(summary, out, json_out)
    return summary


def _recipe_record(cfg: TrainConfig, opts: CVOptions) -> Dict[str, Any]:
    d = {k: v for k, v in cfg.to_dict().items()
         if k not in ("root", "out_dir", "cache_dir", "workers", "device", "progress", "resume", "overwrite",
                      "checkpoint_every", "threads", "test_speakers", "val_speakers", "ratios")}
    return {"name": opts.recipe, "config": d, "toml": describe(cfg),
            "cv": {"folds": opts.folds, "repeats": opts.repeats, "val_speakers_per_fold": opts.val_per_fold}}


def _check_plan(out: str, plan: List[Dict[str, Any]], cfg: TrainConfig) -> None:
    """A rerun must be the same CV: same folds and settings (else its finished folds mean nothing)."""
    path = os.path.join(out, "folds.json")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    ignore = {"progress", "workers", "threads", "cache_dir", "device", "resume", "overwrite", "out_dir", "root"}
    now = {k: v for k, v in cfg.to_dict().items() if k not in ignore}
    before = {k: v for k, v in old.get("config", {}).items() if k not in ignore}
    if old.get("folds") != plan or before != now:
        raise TrainError(f"{out} holds a different cross-validation (other folds or settings); "
                         f"choose another --out to run this one")


def write_summary(summary: CVSummary, out: str, json_out: Optional[str] = None) -> None:
    d = summary.to_dict()
    atomic_write_json(os.path.join(out, "cv.json"), d)
    if json_out:
        atomic_write_json(json_out, d)
    atomic_write_text(os.path.join(out, "cv.txt"), summary.table() + "\n")
    try:
        s = summary.stats()
        plot_confusion(summary.pooled_confusion(), summary.labels, os.path.join(out, "cv_confusion.png"),
                       title=f"pooled over {len(summary.folds)} fold runs (UAR {s['uar_mean']:.3f})")
    except ImportError:  # matplotlib is in [train]; the JSON carries the matrix anyway
        pass


def _test_set(checkpoint: str, store: FeatureStore, utts: Sequence[Utterance], test_speakers: Sequence[str]):
    """``(ckpt, kept utterances, population-normalised features, class ids)`` of a fold's test speakers."""
    from ser_edge.checkpoint import load_checkpoint
    from ser_edge.runtime.features import normalise

    ckpt = load_checkpoint(checkpoint)
    index = {lab: i for i, lab in enumerate(ckpt.labels)}
    test = [u for u in utts if u.speaker in set(test_speakers) and u.label in index]
    kept, _ = store.load(test)
    feats = [normalise(store.features(u), ckpt.feature_config) for u in kept]
    return ckpt, kept, feats, np.array([index[u.label] for u in kept], dtype=np.int64)


def population_metrics(checkpoint: str, store: FeatureStore, utts: Sequence[Utterance],
                       test_speakers: Sequence[str]) -> Metrics:
    """Test metrics with the training population's statistics (no per-speaker adaptation)."""
    from ser_edge.evaluate import evaluate_features

    ckpt, _, feats, y = _test_set(checkpoint, store, utts, test_speakers)
    return evaluate_features(ckpt, feats, y)


def int8_metrics(checkpoint: str, store: FeatureStore, utts: Sequence[Utterance],
                 test_speakers: Sequence[str]) -> Metrics:
    """Test metrics of ``checkpoint`` after the same ONNX export + int8 quantisation that
    ``ser-edge export --quantize`` ships, run by onnxruntime."""
    import logging
    import tempfile
    import warnings

    from ser_edge.export.common import build_metadata
    from ser_edge.export.onnx_export import OnnxRunner, export_onnx, lstm_count, quantize_onnx
    from ser_edge.runtime.features import pad_batch

    ckpt, kept, feats, y = _test_set(checkpoint, store, utts, test_speakers)
    mc = ckpt.model_config
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = os.path.join(tmp, "m.onnx"), os.path.join(tmp, "m.int8.onnx")
        n_lstm = lstm_count(mc.arch, mc.num_layers)
        # The exporters' deprecation and advice warnings are `ser-edge export`'s to report; here
        # they would repeat once per fold with nothing for the user to do.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            level = logging.getLogger().level
            logging.getLogger().setLevel(logging.ERROR)
            try:
                export_onnx(ckpt.build_model(), build_metadata(ckpt, None), fp32, n_lstm)
                quantize_onnx(fp32, int8, n_lstm)
            finally:
                logging.getLogger().setLevel(level)
        run = OnnxRunner(int8)
        logits = np.concatenate([run(*pad_batch(feats[i:i + 64])) for i in range(0, len(feats), 64)])
    return compute_metrics(y, logits.argmax(axis=1), ckpt.labels)


__all__ = ["CVOptions", "CVSummary", "FoldResult", "make_folds", "pick_val", "run_cv", "natural_key"]
