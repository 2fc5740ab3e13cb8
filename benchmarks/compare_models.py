"""Two exported models side by side on the same real clips: WAV path -> label, CPU time per clip
(process time, one thread, interleaved runs, medians), and the ratio, in one run.

    python benchmarks/compare_models.py OLD_MODEL NEW_MODEL [--clips 24] [--repeat 5]

Used to check that a new default model is no slower than the one it replaces (the clips are
RAVDESS speech from ../shared/data, read in place)."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from ser_edge.runtime.recognizer import Recognizer  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ravdess-speech-16k"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs=2)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    clips = sorted(str(p) for p in DATA.glob("Actor_*/*.wav"))[:: max(1, 1440 // args.clips)][: args.clips]
    recs = [Recognizer.load(m, threads=1) for m in args.models]
    for rec in recs:  # warm up: first-call allocations are not what a device pays per clip
        rec.predict(clips[0])
    times = [[] for _ in recs]
    for _ in range(args.repeat):
        for clip in clips:
            for i, rec in enumerate(recs):  # interleaved: both models see the same machine load
                t0 = time.process_time()
                rec.predict(clip)
                times[i].append(time.process_time() - t0)
    med = [1e3 * statistics.median(t) for t in times]
    for m, t in zip(args.models, med):
        print(f"{Path(m).name:40s} {t:7.2f} ms CPU per clip (median of {len(times[0])})")
    print(f"second / first: {med[1] / med[0]:.2f} ({'faster' if med[1] < med[0] else 'slower'}: "
          f"{max(med) / min(med):.2f}x)")


if __name__ == "__main__":
    main()
