"""Where one clip's time goes, stage by stage: each stage alone (its input prepared, timed in a
loop) and inside the pipeline (the stages one after another, as ``Recognizer.predict`` runs them,
where they evict each other's data from the caches). CPU time, medians, one thread::

    python benchmarks/stages.py WAV [--model models/ser-edge-ravdess.int8.onnx] [--runs 400]

Stages: read (``read_wav``: decode, down-mix), resample (to the model rate; 0 for a clip already
there), check (``check_waveform``), features (``Recognizer.features``: STFT, mel, chroma, gain,
normalisation), model (the backend on the features).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # before numpy
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Dict, List  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
STAGES = ("read", "resample", "check", "features", "model")


def alone(fn: Callable[[], object], runs: int) -> float:
    """Median CPU microseconds of ``fn`` called ``runs`` times in a row (after 10 untimed)."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1e6 * float(np.median(times))


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wav", type=Path)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "ser-edge-ravdess.int8.onnx")
    ap.add_argument("--runs", type=int, default=400)
    args = ap.parse_args(argv)

    from ser_edge.runtime import Recognizer
    from ser_edge.runtime.audio import check_waveform, read_wav, resample

    rec = Recognizer.load(str(args.model), threads=1)
    sr = rec.sample_rate
    path = str(args.wav)
    raw, rate = read_wav(path)
    y = resample(raw, rate, sr) if rate != sr else raw
    feats = rec.features(y)
    lengths = np.array([len(feats)], dtype=np.int64)
    fns: Dict[str, Callable[[], object]] = {
        "read": lambda: read_wav(path),
        "resample": (lambda: resample(raw, rate, sr)) if rate != sr else (lambda: None),
        "check": lambda: check_waveform(y, sr),
        "features": lambda: rec.features(y),
        "model": lambda: rec.logits(feats[None], lengths),
    }
    single = {name: alone(fn, args.runs) for name, fn in fns.items()}

    piped: List[List[float]] = []
    for i in range(args.runs + 10):
        stamps = [time.process_time()]
        w, r = read_wav(path)
        stamps.append(time.process_time())
        if r != sr:
            w = resample(w, r, sr)
        stamps.append(time.process_time())
        check_waveform(w, sr)
        stamps.append(time.process_time())
        f = rec.features(w)
        stamps.append(time.process_time())
        rec.logits(f[None], np.array([len(f)], dtype=np.int64))
        stamps.append(time.process_time())
        if i >= 10:
            piped.append(list(np.diff(stamps)))
    in_pipe = dict(zip(STAGES, (1e6 * np.median(piped, axis=0)).tolist()))

    print(f"{args.wav.name}: {len(raw) / rate:.2f} s at {rate} Hz; model {args.model.name} ({rec.backend_name}); "
          f"CPU microseconds, median of {args.runs}")
    print(f"{'stage':<10}{'alone':>10}{'in pipeline':>14}")
    for name in STAGES:
        print(f"{name:<10}{single[name]:>10.0f}{in_pipe[name]:>14.0f}")
    print(f"{'total':<10}{sum(single.values()):>10.0f}{sum(in_pipe.values()):>14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
