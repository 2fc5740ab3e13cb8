#!/usr/bin/env python3
"""ser-edge runtime vs the usual Python stack (librosa + PyTorch), in one run, on the same clips.

Sections (all single-threaded: OMP/MKL/OpenBLAS = 1, ``torch.set_num_threads(1)``, onnxruntime
and LiteRT with one intra-op thread):

(a) ``mfcc``        numpy MFCC (``ser_edge.runtime.features.mfcc``) vs ``librosa.feature.mfcc``
                    with identical parameters, on waveforms already in memory.
(b) ``end_to_end``  WAV path -> label: ``Recognizer.predict`` for every exported model found
                    vs ``librosa.load`` + ``librosa.feature.mfcc`` + the PyTorch eager model.
(c) ``cold_start``  fresh interpreter -> first label printed (subprocesses) and peak RSS.
(d) ``sizes``       model files on disk.
(e) ``resample``    ``ser_edge.runtime.audio.resample`` vs soxr HQ (librosa's ``soxr_hq``), 3 s of
                    speech at 8 to 96 kHz -> the model rate, plus a sine sweep of both (passband
                    ripple, band edge, alias rejection).
(f) ``hi_rate``     (b) on the same clips as 44.1 / 48 kHz stereo WAVs (temp dir): each pipeline
                    reads, down-mixes and resamples them its own way.
(g) ``streaming``   ``listen``'s CPU per second of audio, window mode vs the mode it picks now
                    (``_stream.py``), every runtime model.

Timed calls are interleaved (pipelines rotate order for every clip and repeat) so a noisy
neighbour slows all pipelines alike. Warm timings record wall time and the process's CPU time
(user + system; every pipeline is single-threaded, so on an idle machine the two agree, and on a
busy one CPU time leaves out the time other processes took). Every figure is a median, every
ratio is ``reference / this`` (> 1: this one is faster / smaller / lighter). See README.md.

    python benchmarks/run.py [--model-dir DIR] [--checkpoint PT] [--clips N] [--repeat R]
                             [--cold-repeat C] [--clock cpu|wall] [--json OUT] [--markdown]
                             [--sections mfcc,resample,end_to_end,hi_rate,streaming,cold_start,sizes]
                             [--hi-rates 44100,48000]
"""

import os

# Before numpy (or anything that links a BLAS / OpenMP runtime) is imported: one thread, in this
# process and in every cold-start child (they inherit the environment).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple  # noqa: E402

import numpy as np  # noqa: E402

from ser_edge.runtime.audio import load_audio, write_wav  # noqa: E402
from ser_edge.runtime.errors import SerEdgeError  # noqa: E402
from ser_edge.runtime.features import FeatureConfig, mfcc, raw_features  # noqa: E402
from ser_edge.runtime.io import atomic_write_json  # noqa: E402
from ser_edge.runtime.signals import speechlike  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: A trained unidirectional LSTM (the shipped model is not one), the stateful streaming mode's
#: model: numpy and int8 ONNX (with its ``.int8.stream.onnx`` graph beside it).
UNIDIRECTIONAL = {"numpy": REPO / "tests" / "data" / "stream-lstm-ravdess.npz",
                  "onnxruntime int8": REPO / "tests" / "data" / "stream-lstm-ravdess.int8.onnx"}
DEFAULT_MODEL_DIR = REPO / "models"
DEFAULT_JSON = REPO / "runs" / "bench" / "benchmarks.json"
SHARED_DATA = Path(os.environ.get("SER_EDGE_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_DATA = SHARED_DATA / "ravdess-speech-16k"
#: Name preferred when a model directory holds several models.
PREFERRED_STEMS = ("ser-edge-ravdess", "model")
REFERENCE = "librosa + PyTorch"
#: ``wall``: perf_counter; ``cpu``: the process's user + system time (see interleaved_ms).
CLOCKS = ("cpu", "wall")

#: Model files by suffix (int8 before fp32: ``.int8.onnx`` also ends in ``.onnx``).
ARTIFACTS: Tuple[Tuple[str, str, str], ...] = (
    ("onnx-int8", ".int8.onnx", "ONNX int8"),
    ("onnx-fp32", ".onnx", "ONNX fp32"),
    ("tflite-int8", ".int8.tflite", "TFLite int8"),
    ("tflite-fp32", ".tflite", "TFLite fp32"),
    ("ts-int8", ".int8.ts", "TorchScript int8"),
    ("ts-fp32", ".ts", "TorchScript fp32"),
    ("npz", ".npz", "numpy .npz"),
    ("checkpoint", ".pt", "PyTorch checkpoint"),
)
#: Runtime pipelines: (artifact, backend, precision), in table order.
RUNTIME_PIPELINES = (("onnx-int8", "onnxruntime", "int8"), ("onnx-fp32", "onnxruntime", "fp32"),
                     ("tflite-int8", "litert", "int8"), ("tflite-fp32", "litert", "fp32"),
                     ("npz", "numpy", "fp32"))


class BenchError(SerEdgeError):
    """The benchmark cannot run as asked (no model, no checkpoint, mismatched files)."""


def log(msg: str) -> None:
    """Progress goes to stderr so stdout holds only the result tables."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# Models on disk
# ------------------------------------------------------------------------------------------

def classify(name: str) -> Optional[Tuple[str, str]]:
    """``"model.int8.onnx" -> ("onnx-int8", "model")``; ``None`` for files that are not models."""
    for key, suffix, _ in ARTIFACTS:
        if name.endswith(suffix) and len(name) > len(suffix):
            return key, name[: -len(suffix)]
    return None


def find_models(model_dir: Path, stem: Optional[str] = None) -> Dict[str, Path]:
    """Model files of one model in ``model_dir``: ``{artifact key: path}``. Raises :class:`BenchError`."""
    if not model_dir.is_dir():
        raise BenchError(f"{model_dir}: no such model directory")
    by_stem: Dict[str, Dict[str, Path]] = {}
    for p in sorted(model_dir.iterdir()):
        hit = classify(p.name) if p.is_file() else None
        if hit:
            by_stem.setdefault(hit[1], {})[hit[0]] = p
    if stem is None:
        preferred = [s for s in PREFERRED_STEMS if s in by_stem]
        if len(by_stem) > 1 and not preferred:
            raise BenchError(f"{model_dir} holds several models ({', '.join(sorted(by_stem))}); pick one with --name")
        stem = preferred[0] if preferred else next(iter(by_stem), None)
    found = by_stem.get(stem or "", {})
    if not any(key for key, _, _ in RUNTIME_PIPELINES if key in found):
        raise BenchError(f"no runtime model (.onnx / .tflite / .npz) in {model_dir}"
                         + (f" named {stem}.*" if stem else "")
                         + "; pass --model-dir with a `ser-edge export` output directory and --checkpoint")
    return found


def check_same_model(checkpoint: Path, models: Dict[str, Path]) -> Dict[str, Any]:
    """Labels and feature config of the checkpoint must be those embedded in the exported models,
    else the two pipelines would not compare the same thing. Returns the feature config dict."""
    import torch

    from ser_edge.runtime.backends import load_backend

    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for key, backend, _ in RUNTIME_PIPELINES:
        if key not in models:
            continue
        model = models[key]
        try:
            meta = load_backend(str(model), backend=backend, threads=1).metadata
        except SerEdgeError:
            continue  # e.g. no LiteRT here: that pipeline is skipped (and reported) later
        _check_metadata(payload, meta, checkpoint, model)
    return payload["feature_config"]


def _check_metadata(payload: Dict[str, Any], meta: Any, checkpoint: Path, model: Path) -> None:
    if list(payload["labels"]) != list(meta.labels):
        raise BenchError(f"{checkpoint} has labels {payload['labels']} but {model} has {meta.labels}: "
                         "not the same model")
    if FeatureConfig.from_dict(payload["feature_config"]) != meta.feature_config:
        raise BenchError(f"{checkpoint} and {model} carry different feature configs: not the same model")


# ------------------------------------------------------------------------------------------
# Clips
# ------------------------------------------------------------------------------------------

def ravdess_clips(root: Path, n: int) -> List[Path]:
    """``n`` clips spread evenly over the sorted corpus (so over actors and emotions), read in place."""
    wavs = sorted(root.rglob("*.wav"))
    if not wavs:
        return []
    idx = np.unique(np.linspace(0, len(wavs) - 1, min(n, len(wavs))).round().astype(int))
    return [wavs[i] for i in idx]


def synthetic_clips(out_dir: Path, n: int, sample_rate: int) -> List[Path]:
    """``n`` speech-like WAVs (1.5..3.5 s, 100..250 Hz pitch) written to ``out_dir`` (a temp dir)."""
    paths = []
    for i in range(n):
        frac = i / max(n - 1, 1)
        p = out_dir / f"synthetic-{i:03d}.wav"
        y = speechlike(1.5 + 2.0 * frac, sample_rate, f0=100.0 + 150.0 * ((i * 0.618) % 1.0), seed=i,
                       wobble=0.15, taper=False)
        write_wav(p, y, sample_rate)
        paths.append(p)
    return paths


# ------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------

def interleaved_ms(fns: Dict[str, Callable[[Any], Any]], inputs: Sequence[Any],
                   repeat: int) -> Dict[str, Dict[str, List[float]]]:
    """Call every function on every input ``repeat`` times, rotating the order of the functions
    at each (repeat, input) so drift and noise hit them alike. One untimed warm-up call each.

    Returns ``{name: {"wall": [ms, ...], "cpu": [ms, ...]}}``, ``repeat * len(inputs)`` samples
    each. ``cpu`` is this process's CPU time (user + system): every pipeline runs on one thread,
    so it equals wall time on an idle machine and does not count time lost to other processes.
    """
    names = list(fns)
    for name in names:
        fns[name](inputs[0])
    times: Dict[str, Dict[str, List[float]]] = {name: {"wall": [], "cpu": []} for name in names}
    k = 0
    for _ in range(repeat):
        for x in inputs:
            for name in names[k % len(names):] + names[:k % len(names)]:
                c0, t0 = time.process_time(), time.perf_counter()
                fns[name](x)
                t1, c1 = time.perf_counter(), time.process_time()
                times[name]["wall"].append(1e3 * (t1 - t0))
                times[name]["cpu"].append(1e3 * (c1 - c0))
            k += 1
    return times


def summary(samples: Sequence[float]) -> Dict[str, float]:
    a = np.asarray(samples, dtype=np.float64)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "min": float(a.min()), "n": int(a.size)}


def ratio(reference: Optional[float], this: Optional[float]) -> Optional[float]:
    """``reference / this`` (> 1: this one is faster / smaller); ``None`` when either is missing."""
    if not reference or not this:
        return None
    return float(reference) / float(this)


def timing(wall: Sequence[float], cpu: Sequence[Optional[float]]) -> Dict[str, Optional[Dict[str, float]]]:
    """``{"wall_ms": summary, "cpu_ms": summary or None}`` of one pipeline's samples."""
    cpu = [c for c in cpu if c is not None]
    return {"wall_ms": summary(wall), "cpu_ms": summary(cpu) if cpu else None}


def ratios(ref: Dict[str, Any], this: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """Median ratios ``reference / this`` for both clocks of two :func:`timing` results."""
    return {clock: ratio(ref[f"{clock}_ms"]["median"] if ref[f"{clock}_ms"] else None,
                         this[f"{clock}_ms"]["median"] if this[f"{clock}_ms"] else None)
            for clock in CLOCKS}


# ------------------------------------------------------------------------------------------
# (a) MFCC
# ------------------------------------------------------------------------------------------

def bench_mfcc(waves: List[np.ndarray], fc: Dict[str, Any], repeat: int) -> Dict[str, Any]:
    """numpy MFCC vs librosa MFCC on the same in-memory waveforms, same parameters."""
    import _usual

    cfg = FeatureConfig.from_dict(fc)
    errs = [_rel_diff(mfcc(y, cfg), _usual.librosa_mfcc(y, fc)) for y in waves]
    times = interleaved_ms({"numpy": lambda y: mfcc(y, cfg), "librosa": lambda y: _usual.librosa_mfcc(y, fc)},
                           waves, repeat)
    ours, ref = timing(**times["numpy"]), timing(**times["librosa"])
    out = {"numpy": ours, "librosa": ref, "ratio_librosa_over_numpy": ratios(ref, ours), "max_rel_diff": max(errs)}
    if cfg.n_chroma or cfg.deltas or cfg.gain_norm_db is not None or cfg.base != "mfcc":
        out["features"] = bench_features(waves, fc, cfg, repeat)
    return out


def bench_features(waves: List[np.ndarray], fc: Dict[str, Any], cfg: FeatureConfig, repeat: int) -> Dict[str, Any]:
    """The model's whole feature set (gain normalisation, MFCC or log-mel, deltas, chroma):
    ``raw_features`` (one STFT feeds mel and chroma) vs the usual stack's librosa calls."""
    import _usual

    errs = [_rel_diff(raw_features(y, cfg), _usual.librosa_features(y, fc)) for y in waves]
    times = interleaved_ms({"numpy": lambda y: raw_features(y, cfg),
                            "librosa": lambda y: _usual.librosa_features(y, fc)}, waves, repeat)
    ours, ref = timing(**times["numpy"]), timing(**times["librosa"])
    return {"numpy": ours, "librosa": ref, "ratio_librosa_over_numpy": ratios(ref, ours), "max_rel_diff": max(errs),
            "n_features": cfg.n_features}


def _rel_diff(ours: np.ndarray, ref: np.ndarray) -> float:
    """max |ours - ref| / max |ref| (the parity measure of tests/test_features.py)."""
    return float(np.abs(ours.astype(np.float64) - ref).max() / np.abs(ref).max())


# ------------------------------------------------------------------------------------------
# (b) End to end
# ------------------------------------------------------------------------------------------

@dataclass
class Pipeline:
    """One WAV-path -> label pipeline. ``predict(path) -> (label, logits (n_classes,))``."""

    name: str
    kind: str  # "runtime" | "usual"
    backend: str
    precision: str
    model: str
    predict: Callable[[str], Tuple[str, np.ndarray]] = field(repr=False)


def runtime_pipelines(models: Dict[str, Path]) -> Tuple[List[Pipeline], List[Dict[str, str]]]:
    """A loaded :class:`Recognizer` per runtime model found; models whose backend cannot load here
    (e.g. no LiteRT installed) are returned as ``skipped`` with the reason."""
    from ser_edge.runtime import Recognizer

    pipes, skipped = [], []
    for key, backend, precision in RUNTIME_PIPELINES:
        if key not in models:
            continue
        name = f"ser-edge {backend} {precision}"
        try:
            rec = Recognizer.load(models[key], backend=backend, threads=1)
        except SerEdgeError as e:
            skipped.append({"pipeline": name, "model": str(models[key]), "reason": str(e)})
            log(f"skipping {name}: {e}")
            continue
        pipes.append(Pipeline(name, "runtime", backend, precision, str(models[key]),
                              lambda p, rec=rec: _label_logits(rec.predict(p))))
    return pipes, skipped


def _label_logits(pred) -> Tuple[str, np.ndarray]:
    return pred.label, pred.logits


def usual_pipeline(checkpoint: Path) -> Pipeline:
    import _usual

    stack = _usual.UsualStack.load(str(checkpoint))
    return Pipeline(REFERENCE, "usual", "pytorch", "fp32", str(checkpoint), stack.predict)


def agreement(pipes: List[Pipeline], clips: List[Path]) -> Dict[str, Dict[str, float]]:
    """Untimed pass: each pipeline's labels and logits vs the PyTorch reference on every clip
    (same weights and features, so fp32 agrees closely; int8 shows its quantisation error)."""
    results = {p.name: [p.predict(str(c)) for c in clips] for p in pipes}
    ref = results[REFERENCE]
    out = {}
    for name, res in results.items():
        same = [a[0] == b[0] for a, b in zip(res, ref)]
        diff = max(float(np.abs(np.asarray(a[1], np.float64) - b[1]).max()) for a, b in zip(res, ref))
        out[name] = {"top1_agreement": float(np.mean(same)), "max_abs_logit_diff": diff, "labels": [r[0] for r in res]}
    return out


#: fp32 logits further than this from PyTorch's mean different weights, not rounding.
SAME_WEIGHTS_TOL = 1e-2


def bench_end_to_end(pipes: List[Pipeline], clips: List[Path], repeat: int, audio_s: float,
                     same_samples: bool = True) -> Dict[str, Any]:
    """Warm WAV -> label timings of every pipeline on ``clips``. ``same_samples=False`` for clips
    that need resampling: ser-edge and soxr resample differently (in the transition band), so the
    logits differ a little and the same-weights warning would be a false alarm."""
    agree = agreement(pipes, clips)
    for p in pipes:
        if same_samples and p.precision == "fp32" and agree[p.name]["max_abs_logit_diff"] > SAME_WEIGHTS_TOL:
            log(f"WARNING: {p.name} differs from PyTorch by up to {agree[p.name]['max_abs_logit_diff']:.3g} "
                "in the logits: the checkpoint may not hold the exported weights")
    times = interleaved_ms({p.name: p.predict for p in pipes}, [str(c) for c in clips], repeat)
    ref = timing(**times[REFERENCE])
    rows = []
    for p in pipes:
        t = timing(**times[p.name])
        rows.append({"pipeline": p.name, "kind": p.kind, "backend": p.backend, "precision": p.precision,
                     "model": p.model, **t, "rtf": {c: t[f"{c}_ms"]["median"] / 1e3 / audio_s for c in CLOCKS},
                     "ratio_vs_reference": ratios(ref, t),
                     "top1_agreement": agree[p.name]["top1_agreement"],
                     "max_abs_logit_diff": agree[p.name]["max_abs_logit_diff"],
                     "labels": agree[p.name]["labels"]})
    return {"reference": REFERENCE, "pipelines": rows}


# ------------------------------------------------------------------------------------------
# (c) Cold start
# ------------------------------------------------------------------------------------------

def spawn_once(mode: str, args: Dict[str, str]) -> Dict[str, Any]:
    """Start ``_coldstart.py`` and time spawn -> its first (only) output line. Also returns the
    child's own report and, from ``os.wait4``, its CPU time and ``ru_maxrss``."""
    cmd = [sys.executable, str(HERE / "_coldstart.py"), mode, json.dumps(args)]
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child cannot block on it
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        line = proc.stdout.readline()
        wall = 1e3 * (time.perf_counter() - t0)
        proc.stdout.read()
        proc.stdout.close()
        usage = reap(proc)
        if proc.returncode != 0 or not line.strip():
            err.seek(0)
            tail = err.read().decode("utf-8", "replace").strip()[-800:]
            raise BenchError(f"cold-start child ({mode}) failed with exit {proc.returncode}: {tail}")
    child = json.loads(line)
    maxrss_mb = cpu_ms = None
    if usage is not None:
        maxrss_mb = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS, KiB on Linux
        cpu_ms = 1e3 * (usage.ru_utime + usage.ru_stime)
    # VmHWM is the child's own high-water mark. ru_maxrss is the fallback only: on Linux it keeps
    # the high-water mark of the parent the child was forked from.
    vmhwm = child["vmhwm_mb"]
    return {"wall_ms": wall, "cpu_ms": cpu_ms, "peak_rss_mb": vmhwm if vmhwm is not None else maxrss_mb,
            "rss_source": "VmHWM" if vmhwm is not None else "ru_maxrss", "ru_maxrss_mb": maxrss_mb, **child}


def reap(proc: subprocess.Popen) -> Any:
    """Wait for ``proc``; its own ``rusage`` via ``os.wait4`` (``RUSAGE_CHILDREN`` would add up
    every child so far), or ``None`` where ``wait4`` does not exist (Windows)."""
    if not hasattr(os, "wait4"):
        proc.wait()
        return None
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage


def bench_cold_start(pipes: List[Pipeline], wav: Path, repeat: int, warmup: int,
                     warm_labels: Dict[str, str]) -> Dict[str, Any]:
    """``repeat`` fresh interpreters per pipeline, interleaved, after ``warmup`` untimed spawns
    each (they bring shared libraries and .pyc files into the page cache for all alike)."""
    specs = {}
    for p in pipes:
        if p.kind == "runtime":
            specs[p.name] = ("runtime", {"model": p.model, "backend": p.backend, "wav": str(wav)})
        else:
            specs[p.name] = ("usual", {"checkpoint": p.model, "wav": str(wav)})
    names = list(specs)
    for _ in range(warmup):
        for name in names:
            spawn_once(*specs[name])
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in names}
    for r in range(repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            runs[name].append(spawn_once(*specs[name]))
    ref = _cold_summary(runs[REFERENCE])
    rows = []
    for p in pipes:
        s = _cold_summary(runs[p.name])
        rows.append({"pipeline": p.name, "kind": p.kind, **s,
                     "label_matches_warm_run": s["label"] == warm_labels[p.name],
                     "ratio_vs_reference": ratios(ref, s),
                     "rss_ratio_vs_reference": ratio(ref["peak_rss_mb"], s["peak_rss_mb"])})
    return {"reference": REFERENCE, "clip": str(wav), "repeat": repeat, "warmup": warmup, "pipelines": rows}


def _cold_summary(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    median_of = lambda key: float(np.median([r[key] for r in runs]))  # noqa: E731
    rss = [r["peak_rss_mb"] for r in runs if r["peak_rss_mb"] is not None]
    maxrss = [r["ru_maxrss_mb"] for r in runs if r["ru_maxrss_mb"] is not None]
    return {**timing([r["wall_ms"] for r in runs], [r["cpu_ms"] for r in runs]), "startup_ms": median_of("startup_ms"),
            "load_ms": median_of("load_ms"), "predict_ms": median_of("predict_ms"),
            "peak_rss_mb": float(np.median(rss)) if rss else None, "rss_source": runs[-1]["rss_source"],
            "ru_maxrss_mb": float(np.median(maxrss)) if maxrss else None,
            "heavy_modules": runs[-1]["heavy_modules"], "label": runs[-1]["label"]}


# ------------------------------------------------------------------------------------------
# (e) Resampling and (f) high-rate stereo inputs
# ------------------------------------------------------------------------------------------

#: Input rates of the resampling table (3 s of audio each, to the model rate): the two every
#: phone and laptop records at first, then the other common ones.
RESAMPLE_RATES = (48000, 44100, 8000, 11025, 22050, 32000, 88200, 96000)
RESAMPLE_SECONDS = 3.0
#: Rates of the stereo WAVs for the high-rate end-to-end tables (``--hi-rates``).
HI_RATES = (44100, 48000)
#: Sine-sweep grids (fractions of the output Nyquist): passband tones, and tones that alias
#: unless the filter removes them (from just above the Nyquist up to the input Nyquist).
PASSBAND_FLAT_UP_TO = 0.8
PASSBAND_EDGES = (0.875, 0.95)
ALIAS_FROM = 1.0125


def soxr_hq(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """What ``librosa.load(..., res_type="soxr_hq")`` does to the samples."""
    import soxr

    return soxr.resample(y, sr_in, sr_out, quality="HQ")


def resample_input(waves: List[np.ndarray], sr: int, rate: int, seconds: float) -> np.ndarray:
    """``seconds`` of real (or synthetic) speech at ``rate``: the clips at ``sr`` joined, cut, and
    brought to ``rate`` by soxr HQ (so neither side resamples its own output)."""
    y = np.concatenate(waves)[:int(seconds * sr)]
    y = np.concatenate([y, np.zeros(max(0, int(seconds * sr) - len(y)), np.float32)])
    return soxr_hq(y, sr, rate).astype(np.float32)


def tone_gain_db(fn: Callable[[np.ndarray, int, int], np.ndarray], rate: int, sr: int, freq: float) -> float:
    """Output / input level in dB of a 0.5 s sine at ``freq`` resampled from ``rate`` to ``sr`` by ``fn``.
    Below ``sr / 2``: the gain at ``freq`` (least-squares fit); above: all output power, which is
    alias (there is nothing else to measure). The 10 % at each end (filter edges) is left out."""
    n = rate // 2
    x = 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)
    y = np.asarray(fn(x.astype(np.float32), rate, sr), dtype=np.float64)
    k = len(y) // 10
    y, t = y[k:len(y) - k], np.arange(k, len(y) - k) / sr
    if freq < sr / 2:
        basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
        level = float(np.hypot(*np.linalg.lstsq(basis, y, rcond=None)[0]))
    else:
        level = float(np.sqrt(2 * np.mean(y ** 2)))
    return 20 * np.log10(max(level, 1e-12) / 0.5)


def resample_quality(fn: Callable[[np.ndarray, int, int], np.ndarray], rate: int, sr: int) -> Dict[str, float]:
    """Sine sweep of one downsampler: passband ripple (max |gain| up to 80 % of the new Nyquist),
    the gain at 87.5 % and 95 % of it, and the alias rejection (the smallest attenuation of any
    tone from 101.25 % of the new Nyquist up to the input's)."""
    nyq = sr / 2
    flat = [tone_gain_db(fn, rate, sr, f) for f in np.linspace(0.01 * nyq, PASSBAND_FLAT_UP_TO * nyq, 33)]
    edges = [tone_gain_db(fn, rate, sr, e * nyq) for e in PASSBAND_EDGES]
    alias = [tone_gain_db(fn, rate, sr, f) for f in np.linspace(ALIAS_FROM * nyq, 0.98 * rate / 2, 40)]
    return {"passband_ripple_db": float(np.max(np.abs(flat))),
            **{f"gain_db_at_{e:g}_nyquist": g for e, g in zip(PASSBAND_EDGES, edges)},
            "alias_rejection_db": float(-np.max(alias))}


def bench_resample(waves: List[np.ndarray], sr: int, repeat: int) -> Dict[str, Any]:
    """ser-edge ``resample`` vs soxr HQ on the same 3 s inputs, every rate in RESAMPLE_RATES -> ``sr``;
    plus the sine-sweep quality of both for the downsampling rates."""
    from ser_edge.runtime.audio import resample

    rows = []
    for rate in RESAMPLE_RATES:
        y = resample_input(waves, sr, rate, RESAMPLE_SECONDS)
        ours, ref = resample(y, rate, sr), soxr_hq(y, rate, sr)
        n = min(len(ours), len(ref))
        diff = float(np.sqrt(np.mean((ours[:n] - ref[:n]) ** 2) / np.mean(ref[:n] ** 2)))
        times = interleaved_ms({"ser-edge": lambda x, rate=rate: resample(x, rate, sr),
                                "soxr HQ": lambda x, rate=rate: soxr_hq(x, rate, sr)}, [y], max(20, 4 * repeat))
        t_ours, t_ref = timing(**times["ser-edge"]), timing(**times["soxr HQ"])
        row = {"rate": rate, "seconds": RESAMPLE_SECONDS, "ser-edge": t_ours, "soxr HQ": t_ref,
               "ratio_soxr_over_ser_edge": ratios(t_ref, t_ours), "rel_rms_diff_vs_soxr": diff}
        if rate > sr:
            row["quality"] = {"ser-edge": resample_quality(resample, rate, sr),
                              "soxr HQ": resample_quality(soxr_hq, rate, sr)}
        rows.append(row)
    return {"to_rate": sr, "rows": rows}


def write_stereo_wav(path: Path, left: np.ndarray, right: np.ndarray, rate: int) -> None:
    """16-bit PCM stereo WAV (the runtime's ``write_wav`` is mono only)."""
    import wave

    pcm = np.clip(np.stack([left, right], axis=1), -1.0, 1.0 - 1.0 / 32768)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((pcm * 32768.0).astype("<i2").tobytes())


def hi_rate_clips(clips: List[Path], waves: List[np.ndarray], sr: int, rate: int, workdir: Path) -> List[Path]:
    """The benchmark clips as ``rate`` stereo WAVs in ``workdir`` (a temp dir; nothing is copied
    into the repository): brought up from ``sr`` with soxr HQ; the right channel is the left one
    slightly quieter and 0.1 ms later, as from a second microphone."""
    paths = []
    for clip, y in zip(clips, waves):
        left = soxr_hq(y, sr, rate)
        delay = int(round(1e-4 * rate))
        right = 0.8 * np.concatenate([np.zeros(delay, left.dtype), left[:len(left) - delay]])
        path = workdir / f"{clip.stem}-{rate}-stereo.wav"
        write_stereo_wav(path, left, right, rate)
        paths.append(path)
    return paths


def bench_streaming(pipes: List[Pipeline], waves: List[np.ndarray], sr: int, repeat: int) -> Dict[str, Any]:
    """(g) ``listen``'s CPU per second of audio, every runtime model: the window mode (each 2 s
    window featurised and classified whole at every 0.5 s hop) against the mode ``listen`` picks
    now, the clips streamed back to back (``benchmarks/_stream.py``)."""
    from _stream import bench_stream

    models = {p.name: Path(p.model) for p in pipes if p.kind == "runtime"}
    uni = {name: path for name, path in UNIDIRECTIONAL.items() if path.exists()} if sr == 16000 else {}
    for backend, path in uni.items():  # the stateful mode needs a unidirectional LSTM
        models[f"unidirectional LSTM ({path.name}, {backend})"] = path
    out = bench_stream(models, waves, sr, repeat)
    if uni:
        out["before_issue_10"] = listen_before(list(uni.values()), waves, repeat)
    return out


def listen_before(models: List[Path], waves: List[np.ndarray], repeat: int) -> Dict[str, Any]:
    """``listen`` on each unidirectional LSTM now vs the code issue 10 measured
    (``listen_before.py``: that commit from git, each side in its own process).
    ``{"error": why}`` without the commit."""
    import listen_before as lb

    y = np.concatenate([np.asarray(w, dtype=np.float32) for w in waves])
    try:
        rows = lb.run(models, y, lb.ISSUE_10_BASE, repeat)
    except (SystemExit, subprocess.CalledProcessError) as e:
        return {"error": str(e)}
    return {"commit": lb.ISSUE_10_BASE, "audio_s": len(y) / 16000, "rows": rows}


# ------------------------------------------------------------------------------------------
# (d) Sizes
# ------------------------------------------------------------------------------------------

def bench_sizes(models: Dict[str, Path], checkpoint: Path) -> List[Dict[str, Any]]:
    """Bytes on disk per artifact, plus the bare fp32 ``state_dict`` (a training checkpoint may
    also carry optimizer state, which would flatter every other format)."""
    import io

    import torch

    files = dict(models, checkpoint=checkpoint)
    ckpt_bytes = checkpoint.stat().st_size
    rows = []
    for key, _, label in ARTIFACTS:
        if key in files:
            size = files[key].stat().st_size
            rows.append({"artifact": label, "key": key, "file": str(files[key]), "bytes": size,
                         "ratio_vs_checkpoint": ratio(ckpt_bytes, size)})
    buf = io.BytesIO()
    torch.save(torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"], buf)
    rows.append({"artifact": "PyTorch state_dict only", "key": "state_dict", "file": None,
                 "bytes": buf.getbuffer().nbytes, "ratio_vs_checkpoint": ratio(ckpt_bytes, buf.getbuffer().nbytes)})
    return rows


# ------------------------------------------------------------------------------------------
# Context
# ------------------------------------------------------------------------------------------

def versions() -> Dict[str, Optional[str]]:
    out: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for dist in ("ser-edge", "numpy", "librosa", "torch", "onnxruntime", "ai-edge-litert", "tflite-runtime"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> Optional[List[float]]:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


# ------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------

Table = Tuple[str, List[str], List[List[str]]]  # (title, header, rows)


def fmt_ratio(r: Optional[float], better: str, worse: str) -> str:
    if r is None:
        return "-"
    return f"{r:.1f}× {better}" if r >= 1 else f"{1 / r:.1f}× {worse}"


def fmt_ms(ms: Optional[float]) -> str:
    if ms is None:
        return "n/a"
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def fmt_bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def fmt_mib(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.0f} MiB"


def artifact_key(row: Dict[str, Any]) -> str:
    """The size-table key of an end-to-end row's model file."""
    return next(key for key, backend, precision in RUNTIME_PIPELINES
                if (backend, precision) == (row["backend"], row["precision"]))


def med(entry: Dict[str, Any], clock: str) -> Optional[float]:
    """Median of a :func:`timing` result for ``clock`` (``None`` when that clock is unavailable)."""
    t = entry.get(f"{clock}_ms")
    return t["median"] if t else None


CLOCK_NAME = {"cpu": "CPU time", "wall": "wall time"}


def headline_table(res: Dict[str, Any]) -> Table:
    """The shipped default runtime pipeline (the first found in RUNTIME_PIPELINES order,
    onnxruntime int8 when present) against the reference on every measure. Warm timings use
    ``res["clock"]``; the cold start is wall time by definition."""
    clock = res["clock"]
    e2e = res["end_to_end"]["pipelines"]
    ref, head = e2e[0], next(r for r in e2e if r["kind"] == "runtime")
    cold = {r["pipeline"]: r for r in res["cold_start"]["pipelines"]}
    ch, cr = cold[head["pipeline"]], cold[REFERENCE]
    sizes = {r["key"]: r for r in res["sizes"]}
    size = sizes[artifact_key(head)]
    m = res["mfcc"]
    rows = [
        [f"MFCC per clip ({CLOCK_NAME[clock]})", f"{fmt_ms(med(m['numpy'], clock))} (numpy)",
         f"{fmt_ms(med(m['librosa'], clock))} (librosa)",
         fmt_ratio(m["ratio_librosa_over_numpy"][clock], "faster", "slower")],
        [f"WAV → label per clip ({CLOCK_NAME[clock]})", fmt_ms(med(head, clock)), fmt_ms(med(ref, clock)),
         fmt_ratio(head["ratio_vs_reference"][clock], "faster", "slower")],
        ["Cold start: new process → first label", fmt_ms(med(ch, "wall")), fmt_ms(med(cr, "wall")),
         fmt_ratio(ch["ratio_vs_reference"]["wall"], "faster", "slower")],
        ["Peak RSS of that process", fmt_mib(ch["peak_rss_mb"]), fmt_mib(cr["peak_rss_mb"]),
         fmt_ratio(ch["rss_ratio_vs_reference"], "less", "more")],
        ["Model on disk", f"{fmt_bytes(size['bytes'])} ({size['artifact']})",
         f"{fmt_bytes(sizes['checkpoint']['bytes'])} (checkpoint)",
         fmt_ratio(size["ratio_vs_checkpoint"], "smaller", "larger")],
    ]
    for i, (rate, hi) in enumerate(res.get("hi_rate", {}).items()):
        h = next(r for r in hi["pipelines"] if r["pipeline"] == head["pipeline"])
        rows.insert(2 + i, [f"WAV → label, {int(rate) / 1000:g} kHz stereo ({CLOCK_NAME[clock]})",
                            fmt_ms(med(h, clock)), fmt_ms(med(hi["pipelines"][0], clock)),
                            fmt_ratio(h["ratio_vs_reference"][clock], "faster", "slower")])
    title = f"ser-edge runtime ({head['pipeline'].replace('ser-edge ', '', 1)}) vs {REFERENCE}"
    return title, ["", "ser-edge", REFERENCE, "ratio"], rows


def mfcc_table(res: Dict[str, Any]) -> Table:
    m, clock = res["mfcc"], res["clock"]
    rows = [["numpy (ser_edge.runtime.features)", fmt_ms(med(m["numpy"], "cpu")), fmt_ms(med(m["numpy"], "wall")),
             fmt_ratio(m["ratio_librosa_over_numpy"][clock], "faster", "slower")],
            ["librosa.feature.mfcc", fmt_ms(med(m["librosa"], "cpu")), fmt_ms(med(m["librosa"], "wall")),
             "reference"]]
    f = m.get("features")
    if f:
        rows += [[f"all {f['n_features']} model features: numpy (raw_features)", fmt_ms(med(f["numpy"], "cpu")),
                  fmt_ms(med(f["numpy"], "wall")), fmt_ratio(f["ratio_librosa_over_numpy"][clock], "faster", "slower")],
                 [f"all {f['n_features']} model features: librosa (max relative difference {f['max_rel_diff']:.1e})",
                  fmt_ms(med(f["librosa"], "cpu")), fmt_ms(med(f["librosa"], "wall")), "reference"]]
    return (f"MFCC only, per clip (same parameters; max relative difference {m['max_rel_diff']:.1e})",
            ["implementation", "CPU median", "wall median", f"vs librosa ({CLOCK_NAME[clock]})"], rows)


def end_to_end_table(res: Dict[str, Any]) -> Table:
    clock = res["clock"]
    rows = [[r["pipeline"], fmt_ms(med(r, "cpu")), fmt_ms(med(r, "wall")), fmt_ms(r["wall_ms"]["p90"]),
             f"{r['rtf'][clock]:.4f}",
             "reference" if r["kind"] == "usual" else fmt_ratio(r["ratio_vs_reference"][clock], "faster", "slower"),
             f"{100 * r['top1_agreement']:.0f}%", f"{r['max_abs_logit_diff']:.1e}"]
            for r in res["end_to_end"]["pipelines"]]
    return ("End to end: WAV path → label, warm, per clip",
            ["pipeline", "CPU median", "wall median", "wall p90", "real-time factor",
             f"vs {REFERENCE} ({CLOCK_NAME[clock]})", "same label as PyTorch", "max abs Δlogit"], rows)


def cold_start_table(res: Dict[str, Any]) -> Table:
    rows = []
    for r in res["cold_start"]["pipelines"]:
        vs = ("reference" if r["kind"] == "usual" else
              f"{fmt_ratio(r['ratio_vs_reference']['wall'], 'faster', 'slower')}, "
              f"{fmt_ratio(r['rss_ratio_vs_reference'], 'less', 'more')} memory")
        rows.append([r["pipeline"], fmt_ms(med(r, "wall")), fmt_ms(med(r, "cpu")),
                     fmt_ms(r["startup_ms"] + r["load_ms"]), fmt_ms(r["predict_ms"]), fmt_mib(r["peak_rss_mb"]),
                     vs, ", ".join(r["heavy_modules"]) or "none"])
    return ("Cold start: new process → first label printed",
            ["pipeline", "wall median", "CPU median", "imports + load", "first predict", "peak RSS",
             f"vs {REFERENCE}", "heavy modules loaded"], rows)


def sizes_table(res: Dict[str, Any]) -> Table:
    rows = [[r["artifact"], os.path.basename(r["file"]) if r["file"] else "-", fmt_bytes(r["bytes"]),
             "reference" if r["key"] == "checkpoint" else fmt_ratio(r["ratio_vs_checkpoint"], "smaller", "larger")]
            for r in res["sizes"]]
    return "Model size on disk", ["artifact", "file", "size", "vs checkpoint"], rows


def resample_table(res: Dict[str, Any]) -> Table:
    r, clock = res["resample"], res["clock"]
    rows = []
    for row in r["rows"]:
        q = row.get("quality")

        def qual(key: str, fmt: str, q: Optional[Dict[str, Any]] = q) -> str:
            return " / ".join(fmt.format(q[k][key]) for k in ("ser-edge", "soxr HQ")) if q else "-"

        rows.append([f"{row['rate'] / 1000:g} kHz", fmt_ms(med(row["ser-edge"], clock)),
                     fmt_ms(med(row["soxr HQ"], clock)),
                     fmt_ratio(row["ratio_soxr_over_ser_edge"][clock], "faster", "slower"),
                     qual("passband_ripple_db", "±{:.3f}"), qual("gain_db_at_0.95_nyquist", "{:.1f}"),
                     qual("alias_rejection_db", "{:.0f}")])
    sr = r["to_rate"]
    return (f"Resampling {RESAMPLE_SECONDS:g} s of speech to {sr / 1000:g} kHz ({CLOCK_NAME[clock]}; quality from sine "
            f"sweeps, ser-edge / soxr HQ, downsampling rates)",
            ["input rate", "ser-edge resample", "soxr HQ", "ser-edge vs soxr HQ",
             f"ripple ≤ {PASSBAND_FLAT_UP_TO * sr / 2000:g} kHz (dB)", f"gain at {0.95 * sr / 2000:g} kHz (dB)",
             f"alias rejection ≥ {ALIAS_FROM * sr / 2000:g} kHz (dB)"], rows)


def hi_rate_tables(res: Dict[str, Any]) -> List[Table]:
    out = []
    for rate, hi in res.get("hi_rate", {}).items():
        title, header, rows = end_to_end_table({"clock": res["clock"], "end_to_end": hi})
        out.append((f"{title}: {int(rate) / 1000:g} kHz stereo WAVs (each side resamples: ser-edge its own "
                    f"resampler, librosa.load soxr_hq)", header, rows))
    return out


def streaming_table(res: Dict[str, Any]) -> Table:
    st = res["streaming"]
    rows = []
    for r in st["rows"]:
        rows.append([r["model"], f"{r['window_cpu_ms_per_audio_s']:.2f} ms", r["mode"],
                     f"{r['mode_cpu_ms_per_audio_s']:.2f} ms", fmt_ratio(r["ratio"], "less", "more"),
                     "-" if r["label_agreement"] is None else f"{100 * r['label_agreement']:.0f}%"])
        if "two_states_ratio" in r:
            rows.append([r["model"], "", "stateful, 2 states", f"{r['two_states_cpu_ms_per_audio_s']:.2f} ms",
                         fmt_ratio(r["two_states_ratio"], "less", "more"),
                         f"{100 * r['two_states_label_agreement']:.0f}%"])
    return (f"Streaming (listen): CPU per second of audio, {st['window_s']:g} s window, {st['hop_s']:g} s hop, "
            f"{st['audio_s']:.0f} s of speech streamed",
            ["model", "window mode (before)", "listen's mode", "CPU, that mode", "vs window mode",
             "same labels as window mode"], rows)


def listen_before_table(res: Dict[str, Any]) -> Optional[Table]:
    b = res["streaming"].get("before_issue_10")
    if not b or "error" in b:
        return None
    rows = [[Path(r["model"]).name, f"{r['before_ms_per_audio_s']:.2f} ms", f"{r['now_ms_per_audio_s']:.2f} ms",
             r["mode_now"], fmt_ratio(r["ratio"], "less", "more"),
             "-" if r["same_labels"] is None else f"{100 * r['same_labels']:.1f}%"] for r in b["rows"]]
    return (f"listen now vs listen when issue 10 was filed (commit {b['commit']}, run from git in its own process): "
            f"CPU per second of audio, same model and {b['audio_s']:.0f} s of speech",
            ["model", "listen then (window recomputed every hop)", "listen now", "mode now", "ratio",
             "same labels"], rows)


#: Everything ``--sections`` can pick; cold_start needs end_to_end (the warm labels).
SECTIONS = ("mfcc", "resample", "end_to_end", "hi_rate", "streaming", "cold_start", "sizes")
HEADLINE_NEEDS = ("mfcc", "end_to_end", "cold_start", "sizes")


def tables(res: Dict[str, Any]) -> List[Table]:
    """The tables of the sections present (the headline only when all it quotes ran)."""
    out = [headline_table(res)] if all(k in res for k in HEADLINE_NEEDS) else []
    out += [mfcc_table(res)] if "mfcc" in res else []
    out += [resample_table(res)] if "resample" in res else []
    out += [end_to_end_table(res)] if "end_to_end" in res else []
    out += hi_rate_tables(res)
    out += [streaming_table(res)] if "streaming" in res else []
    before = listen_before_table(res) if "streaming" in res else None
    out += [before] if before else []
    out += [cold_start_table(res)] if "cold_start" in res else []
    out += [sizes_table(res)] if "sizes" in res else []
    return out


def describe(res: Dict[str, Any]) -> str:
    """One paragraph of context: clips, repeats, machine, versions."""
    c, meta, v = res["clips"], res["meta"], res["meta"]["versions"]
    src = ("RAVDESS speech clips (real, read in place)" if c["source"] == "ravdess"
           else "synthetic speech-like clips (RAVDESS not found)")
    load = meta["loadavg_start"]
    return (f"{c['n']} {src}, median {c['median_audio_s']:.2f} s; {res['repeat']} timed runs per clip and pipeline "
            f"(warm, interleaved), {res['cold_start']['repeat'] if 'cold_start' in res else 0} cold starts per "
            "pipeline; one thread everywhere; "
            f"medians; CPU = user + system time of the process, ratios of warm timings use {CLOCK_NAME[res['clock']]}. "
            f"{meta['cpu']}, {meta['cpu_count']} cores"
            + (f", load average {load[0]:.1f} at start" if load else "")
            + f"; Python {v['python']}, numpy {v['numpy']}, librosa {v['librosa']}, torch {v['torch']}, "
            f"onnxruntime {v['onnxruntime']}; {meta['date']}. Ratios = {REFERENCE} / ser-edge, within this run.")


def _numeric(cell: str) -> bool:
    return cell.lstrip("±-")[:1].isdigit() or cell in ("-", "n/a", "reference")


def render_text(res: Dict[str, Any]) -> str:
    out = [describe(res)]
    for title, header, rows in tables(res):
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        out += ["", title, "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
                "  ".join("-" * w for w in widths)]
        out += ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows]
    if res["skipped"]:
        out += ["", "skipped: " + "; ".join(f"{s['pipeline']} ({s['reason']})" for s in res["skipped"])]
    return "\n".join(out)


def render_markdown(res: Dict[str, Any]) -> str:
    """Tables ready to paste into the README (numbers right-aligned, context as a footnote)."""
    out = []
    for title, header, rows in tables(res):
        align = ["---:" if i and all(_numeric(r[i]) for r in rows) else "---" for i in range(len(header))]
        out += [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        out.append("")
    out.append(f"<sub>{describe(res)}</sub>")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    model_dir: Path
    checkpoint: Optional[Path]
    name: Optional[str]
    clips: int
    repeat: int
    cold_repeat: int
    cold_warmup: int
    data: Path
    synthetic: bool
    clock: str = "cpu"
    sections: Tuple[str, ...] = SECTIONS
    hi_rates: Tuple[int, ...] = HI_RATES


def load_clips(s: Settings, sample_rate: int, workdir: Path) -> Tuple[str, List[Path]]:
    """``(source, paths)``: RAVDESS read in place, else synthetic WAVs written to ``workdir``."""
    clips = [] if s.synthetic else ravdess_clips(s.data, s.clips)
    if clips:
        return "ravdess", clips
    if not s.synthetic:
        log(f"no RAVDESS clips at {s.data}: using {s.clips} synthetic speech-like clips")
    return "synthetic", synthetic_clips(workdir, s.clips, sample_rate)


def run(s: Settings, workdir: Path) -> Dict[str, Any]:
    """Every section; returns the JSON-ready result."""
    load_start = loadavg()
    models = find_models(s.model_dir, s.name)
    checkpoint = s.checkpoint or models.get("checkpoint")
    if checkpoint is None or not checkpoint.is_file():
        raise BenchError(f"no PyTorch checkpoint for the {REFERENCE} side "
                         f"({checkpoint or f'no *.pt in {s.model_dir}'}); pass --checkpoint")
    models.pop("checkpoint", None)
    fc = check_same_model(checkpoint, models)
    sr = int(fc["sample_rate"])
    source, clips = load_clips(s, sr, workdir)
    waves = [load_audio(str(c), sr) for c in clips]
    durations = [len(y) / sr for y in waves]
    audio_s = float(np.median(durations))

    out: Dict[str, Any] = {}
    if "mfcc" in s.sections:
        log(f"(a) MFCC: numpy vs librosa on {len(clips)} {source} clips x {s.repeat}")
        out["mfcc"] = bench_mfcc(waves, fc, s.repeat)
    if "resample" in s.sections:
        log(f"(e) resampling: {len(RESAMPLE_RATES)} rates -> {sr} Hz, ser-edge vs soxr HQ, + sine sweeps")
        out["resample"] = bench_resample(waves, sr, s.repeat)
    skipped: List[Dict[str, str]] = []
    if {"end_to_end", "hi_rate", "streaming"} & set(s.sections):
        log("(b) end to end: loading pipelines")
        runtime, skipped = runtime_pipelines(models)
        pipes = [usual_pipeline(checkpoint)] + runtime
    if "end_to_end" in s.sections:
        log(f"(b) end to end: {len(pipes)} pipelines x {len(clips)} clips x {s.repeat}")
        out["end_to_end"] = bench_end_to_end(pipes, clips, s.repeat, audio_s)
    if "hi_rate" in s.sections:
        out["hi_rate"] = {}
        for rate in s.hi_rates:
            log(f"(f) end to end on {rate} Hz stereo WAVs: {len(pipes)} pipelines x {len(clips)} clips x {s.repeat}")
            out["hi_rate"][str(rate)] = bench_end_to_end(pipes, hi_rate_clips(clips, waves, sr, rate, workdir),
                                                         s.repeat, audio_s, same_samples=False)
    if "streaming" in s.sections:
        log(f"(g) streaming: {len(pipes) - 1} runtime models, window mode vs listen's mode, {len(clips)} clips")
        out["streaming"] = bench_streaming(pipes, waves, sr, min(s.repeat, 3))
    if "cold_start" in s.sections:
        warm_labels = {r["pipeline"]: r["labels"][0] for r in out["end_to_end"]["pipelines"]}
        log(f"(c) cold start: {len(pipes)} pipelines x {s.cold_repeat} new processes (+{s.cold_warmup} warm-up)")
        out["cold_start"] = bench_cold_start(pipes, clips[0], s.cold_repeat, s.cold_warmup, warm_labels)
    if "sizes" in s.sections:
        log("(d) sizes")
        out["sizes"] = bench_sizes(models, checkpoint)
    return {
        "meta": {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                 "machine": platform.machine(), "system": platform.system(), "cpu": cpu_model(),
                 "cpu_count": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": loadavg(),
                 "threads": 1, "versions": versions(), "python_executable": sys.executable},
        "model_dir": str(s.model_dir), "checkpoint": str(checkpoint),
        "models": {k: str(v) for k, v in models.items()},
        "clips": {"source": source, "root": str(s.data) if source == "ravdess" else None, "n": len(clips),
                  "files": [str(c) if source == "ravdess" else c.name for c in clips],
                  "median_audio_s": audio_s, "total_audio_s": float(sum(durations))},
        "repeat": s.repeat, "clock": s.clock,
        "ratio_convention": "reference / this: > 1 means this is faster, smaller or uses less memory; "
                            "timings have wall_ms and cpu_ms (process user + system time), ratios both",
        "sections": list(s.sections), **out, "skipped": skipped,
    }


def parse_args(argv: Optional[Sequence[str]] = None) -> Tuple[Settings, Path, bool]:
    """``(settings, json path, markdown?)``."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                    help="directory with the exported models (default: models/)")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="PyTorch checkpoint of the same model (default: the *.pt in --model-dir)")
    ap.add_argument("--name", default=None, help="model file stem, when --model-dir holds several models")
    ap.add_argument("--clips", type=int, default=24, help="number of clips (default 24)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per clip and pipeline (default 5)")
    ap.add_argument("--cold-repeat", type=int, default=5, help="cold starts per pipeline (default 5)")
    ap.add_argument("--cold-warmup", type=int, default=1, help="untimed cold starts per pipeline first (default 1)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"RAVDESS root (default {DEFAULT_DATA})")
    ap.add_argument("--synthetic", action="store_true", help="use synthetic clips even when RAVDESS is present")
    ap.add_argument("--clock", choices=CLOCKS, default="cpu",
                    help="clock for the warm timings' ratios: cpu (process CPU time, robust on a busy "
                         "machine; default) or wall")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"JSON output (default {DEFAULT_JSON})")
    ap.add_argument("--markdown", action="store_true", help="also print the tables as Markdown for the README")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)} (default: all; cold_start adds end_to_end)")
    ap.add_argument("--hi-rates", default=",".join(map(str, HI_RATES)),
                    help="rates (Hz) of the stereo WAVs for the hi_rate section (default 44100,48000)")
    a = ap.parse_args(argv)
    sections = [x.strip() for x in a.sections.split(",") if x.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        ap.error(f"--sections: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(SECTIONS)}")
    if "cold_start" in sections:
        sections.append("end_to_end")
    try:
        hi_rates = tuple(int(x) for x in a.hi_rates.split(",") if x.strip())
    except ValueError:
        ap.error(f"--hi-rates: expected integers like 44100,48000, got {a.hi_rates!r}")
    if not hi_rates or not all(8000 <= r <= 384000 for r in hi_rates):
        ap.error("--hi-rates: rates must be in 8000..384000 Hz")
    for opt in ("clips", "repeat", "cold_repeat"):
        if getattr(a, opt) < 1:
            ap.error(f"--{opt.replace('_', '-')} must be at least 1")
    if a.cold_warmup < 0:
        ap.error("--cold-warmup must be at least 0")
    settings = Settings(a.model_dir.resolve(), a.checkpoint.resolve() if a.checkpoint else None, a.name, a.clips,
                        a.repeat, a.cold_repeat, a.cold_warmup, a.data, a.synthetic, a.clock,
                        tuple(x for x in SECTIONS if x in sections), hi_rates)
    return settings, a.json, a.markdown


def main(argv: Optional[Sequence[str]] = None) -> int:
    settings, json_path, markdown = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="ser-edge-bench-"))
    try:
        res = run(settings, workdir)
    except SerEdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    atomic_write_json(json_path, res)
    print(render_text(res))
    if markdown:
        print("\n" + render_markdown(res))
    log(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
