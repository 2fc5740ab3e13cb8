"""Cold-start child: started by ``run.py`` as a fresh interpreter, classifies one WAV and prints
one JSON line, then exits. The parent times spawn -> that line; this child reports its own
breakdown and its peak resident memory (``VmHWM``: the high-water mark of *this* address space,
unaffected by the parent that forked it).

    python benchmarks/_coldstart.py runtime '{"model": ..., "backend": ..., "wav": ...}'
    python benchmarks/_coldstart.py usual   '{"checkpoint": ..., "wav": ...}'

Only the standard library is imported before the clock starts; everything else is cold start.
"""

import time

T0 = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402
from typing import Callable, Dict, Optional, Tuple  # noqa: E402

#: Modules the runtime must never pull in; the child reports which ones it loaded.
HEAVY = ("torch", "librosa", "onnx", "scipy", "tensorflow", "numba", "sklearn")


def vmhwm_mb() -> Optional[float]:
    """Peak RSS of this process in MiB from ``/proc/self/status`` (``None`` off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def load_runtime(args: Dict[str, str]) -> Callable[[str], str]:
    from ser_edge.runtime import Recognizer

    rec = Recognizer.load(args["model"], backend=args["backend"], threads=1)
    return lambda wav: rec.predict(wav).label


def load_usual(args: Dict[str, str]) -> Callable[[str], str]:
    import _usual  # benchmarks/ is sys.path[0] when this file runs as a script

    stack = _usual.UsualStack.load(args["checkpoint"])
    return lambda wav: stack.predict(wav)[0]


def main(argv: Tuple[str, ...]) -> None:
    mode, args = argv[0], json.loads(argv[1])
    loader = {"runtime": load_runtime, "usual": load_usual}[mode]
    t1 = time.perf_counter()
    predict = loader(args)  # imports + model load
    t2 = time.perf_counter()
    label = predict(args["wav"])
    t3 = time.perf_counter()
    heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
    print(json.dumps({"label": label, "startup_ms": 1e3 * (t1 - T0), "load_ms": 1e3 * (t2 - t1),
                      "predict_ms": 1e3 * (t3 - t2), "vmhwm_mb": vmhwm_mb(), "heavy_modules": heavy}),
          flush=True)


if __name__ == "__main__":
    main(tuple(sys.argv[1:]))
