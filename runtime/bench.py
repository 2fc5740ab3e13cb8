"""On-device benchmark: MFCC time, model time per thread count, real-time factor, peak memory
and cold start (a fresh interpreter from spawn to its first prediction).

Timings are medians over ``repeats`` runs after one warm-up run. ``rtf`` = (features + model)
time / audio duration: below 1 is faster than real time.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .errors import SerEdgeError
from .features import extract
from .recognizer import Recognizer
from .signals import speechlike


def peak_rss_mb() -> Optional[float]:
    """Peak resident memory of this process in MiB (``None`` where neither source exists).

    Linux: ``VmHWM`` from ``/proc/self/status``, the high-water mark of this address space.
    Not ``ru_maxrss``: the kernel carries it over ``exec`` from the address space the child was
    forked from, so a cold-start child of a parent that once held 600 MiB reports >= 600 MiB
    however little it uses itself. Elsewhere (macOS) ``ru_maxrss`` is the fallback."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _median_p90_ms(fn, repeats: int) -> Dict[str, float]:
    fn()  # warm-up: first-call allocations and lazy initialisation are cold start, not steady state
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90))}


_CHILD = """
import time
t0 = time.perf_counter()
from ser_edge.runtime.bench import cold_start_child
cold_start_child(t0, {args!r})
"""


def cold_start_child(t0: float, args: dict) -> None:
    """Body of the cold-start subprocess: load, predict once, print timings as one JSON line."""
    t1 = time.perf_counter()
    rec = Recognizer.load(args["model"], backend=args["backend"], threads=args["threads"])
    t2 = time.perf_counter()
    audio = args["wav"] or speechlike(args["seconds"], rec.sample_rate, taper=False)
    rec.predict(audio)
    t3 = time.perf_counter()
    print(json.dumps({"import_ms": 1e3 * (t1 - t0), "load_ms": 1e3 * (t2 - t1), "first_predict_ms": 1e3 * (t3 - t2),
                      "peak_rss_mb": peak_rss_mb(), "modules": sorted(sys.modules)}), flush=True)


def cold_start(model: str, backend: str = "auto", threads: int = 1, wav: Optional[str] = None,
               seconds: float = 3.0) -> Dict[str, object]:
    """Spawn ``python -c`` with the runtime; ``wall_ms`` runs from spawn to the child's first
    prediction (interpreter start, imports, model load, one predict)."""
    args = {"model": os.path.abspath(model), "backend": backend, "threads": threads,
            "wav": os.path.abspath(wav) if wav else None, "seconds": seconds}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _CHILD.format(args=args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None  # stdout=PIPE
    line = proc.stdout.readline()
    wall = 1e3 * (time.perf_counter() - t0)
    _, err = proc.communicate()
    if proc.returncode != 0 or not line:
        raise SerEdgeError(f"cold-start subprocess failed (exit {proc.returncode}): {err.strip()[-500:]}")
    child = json.loads(line)
    loaded = {m.split(".")[0] for m in child.pop("modules")}
    heavy = sorted(loaded & {"torch", "librosa", "onnx", "scipy", "tensorflow"})
    return {"wall_ms": wall, **child, "heavy_modules_loaded": heavy}


def bench(model: str, wav: Optional[str] = None, threads: Sequence[int] = (1,), backend: str = "auto",
          repeats: int = 20, seconds: float = 3.0, with_cold_start: bool = True) -> Dict[str, object]:
    """Benchmark ``model`` on ``wav`` (or ``seconds`` of synthetic speech). JSON-ready dict."""
    threads = list(threads) or [1]
    rec = Recognizer.load(model, backend=backend, threads=threads[0])
    y = rec.load_waveform(wav) if wav else speechlike(seconds, rec.sample_rate, taper=False)
    audio_s = len(y) / rec.sample_rate
    feats = extract(y, rec.feature_config)
    lengths = np.array([len(feats)], dtype=np.int64)
    feat_t = _median_p90_ms(lambda: extract(y, rec.feature_config), repeats)
    sweep: List[Dict[str, float]] = []
    for n in threads:
        r = rec if n == threads[0] else Recognizer.load(model, backend=backend, threads=n)
        model_t = _median_p90_ms(lambda r=r: r.logits(feats[None], lengths), repeats)
        sweep.append({"threads": n, "model_median_ms": model_t["median_ms"], "model_p90_ms": model_t["p90_ms"],
                      "rtf": (feat_t["median_ms"] + model_t["median_ms"]) / 1e3 / audio_s})
    return {
        "model": os.path.abspath(model),
        "model_mb": os.path.getsize(model) / 2**20,
        "backend": rec.backend_name,
        "quantization": rec.metadata.quantization,
        "audio": os.path.abspath(wav) if wav else f"synthetic {seconds:g} s",
        "audio_s": audio_s,
        "frames": int(len(feats)),
        "repeats": repeats,
        "features_median_ms": feat_t["median_ms"],
        "features_p90_ms": feat_t["p90_ms"],
        "threads": sweep,
        "peak_rss_mb": peak_rss_mb(),  # this process; the cold-start child's is the device-like figure
        "cold_start": cold_start(model, backend, threads[0], wav, seconds) if with_cold_start else None,
        "platform": {"machine": platform.machine(), "python": platform.python_version(),
                     "numpy": np.__version__, "cpus": os.cpu_count()},
    }


def format_report(r: Dict[str, Any]) -> str:
    """Human-readable summary of :func:`bench` output."""
    lines = [f"model     {r['model']} ({r['model_mb']:.2f} MiB, {r['backend']}, quantization {r['quantization']})",
             f"audio     {r['audio']}: {r['audio_s']:.2f} s, {r['frames']} frames; medians of {r['repeats']} runs",
             f"features  {r['features_median_ms']:.2f} ms (p90 {r['features_p90_ms']:.2f})"]
    for t in r["threads"]:
        lines.append(f"model     threads={t['threads']}: {t['model_median_ms']:.2f} ms "
                     f"(p90 {t['model_p90_ms']:.2f}), real-time factor {t['rtf']:.4f}")
    cs = r.get("cold_start")
    if cs:
        lines.append(f"cold start {cs['wall_ms']:.0f} ms spawn-to-first-prediction (imports {cs['import_ms']:.0f}, "
                     f"load {cs['load_ms']:.0f}, predict {cs['first_predict_ms']:.0f}); "
                     f"peak RSS {_mb(cs['peak_rss_mb'])}")
    lines.append(f"peak RSS  {_mb(r['peak_rss_mb'])} (this process)")
    return "\n".join(lines)


def _mb(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.1f} MiB"
