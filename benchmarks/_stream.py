"""Streaming CPU per second of audio: the window mode (what ``listen`` did before issue 10: each
2 s window featurised and classified whole at every 0.5 s hop) against the mode ``listen`` now
picks (``stateful`` for a unidirectional LSTM, ``incremental`` otherwise), in one run.

For ``benchmarks/run.py``::

    from _stream import bench_stream
    section = bench_stream({"onnx int8": Path("m.int8.onnx"), ...}, waves, sr=16000, repeat=3)

``waves``: real clips at the model rate, streamed back to back as one long recording. Each
repeat streams the whole recording once per mode, modes interleaved (the order rotates), and
CPU time (user + system of this process, single-threaded) is divided by the audio's duration.
The ratio is ``window / mode`` (> 1: the new mode is cheaper). Labels of the two modes are
compared hop by hop (agreement; the stateful mode sees one to two windows of context, the
window mode one). Standalone::

    python benchmarks/_stream.py MODEL [MODEL ...] [--data RAVDESS_DIR] [--clips 48] [--repeat 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # before numpy
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List, Sequence  # noqa: E402

import numpy as np  # noqa: E402

WINDOW_S, HOP_S = 2.0, 0.5


def _stream_once(rec, y: np.ndarray, mode: str, hop_s: float = HOP_S) -> tuple:
    """``(cpu seconds, predictions, stream)`` of pushing ``y`` in 0.1 s chunks through one stream.
    ``mode``: a stream mode, or ``"stateful-2"`` (two staggered states); ``hop_s``: the hop the
    auto mode chose (aligned with the model's frames), so every mode runs the same hops."""
    states = 2 if mode == "stateful-2" else 1
    stream = rec.stream(window_s=WINDOW_S, hop_s=hop_s, smoothing="none", mode=mode.split("-")[0], states=states)
    step = int(0.1 * rec.sample_rate)
    t0 = time.process_time()
    preds = []
    for i in range(0, len(y), step):
        preds += stream.push(y[i:i + step])
    return time.process_time() - t0, preds, stream


def bench_stream(models: Dict[str, Path], waves: Sequence[np.ndarray], sr: int, repeat: int = 3) -> Dict[str, Any]:
    """Per model: CPU ms per second of audio in the window mode and in the auto mode, their
    ratio, the auto mode's name and reason, and hop-by-hop label agreement."""
    from ser_edge.runtime import Recognizer

    y = np.concatenate([np.asarray(w, dtype=np.float32) for w in waves])
    audio_s = len(y) / sr
    rows: List[Dict[str, Any]] = []
    for name, path in models.items():
        rec = Recognizer.load(str(path), threads=1)
        if rec.sample_rate != sr:
            raise ValueError(f"{path}: model rate {rec.sample_rate} Hz, clips at {sr} Hz")
        auto = rec.stream(window_s=WINDOW_S, hop_s=HOP_S)
        hop_s = auto.hop / sr
        modes = ["window", auto.mode] + (["stateful-2"] if auto.mode == "stateful" else [])
        cpu: Dict[str, List[float]] = {m: [] for m in modes}
        preds: Dict[str, list] = {}
        _stream_once(rec, y[:int(5 * sr)], auto.mode, hop_s)  # warm-up (sessions, caches)
        for r in range(repeat):
            for m in (modes if r % 2 == 0 else modes[::-1]):
                seconds, preds[m], _ = _stream_once(rec, y, m, hop_s)
                cpu[m].append(seconds)
        per_s = {m: 1e3 * statistics.median(v) / audio_s for m, v in cpu.items()}
        a, b = preds["window"], preds[auto.mode]
        extra = {}
        if "stateful-2" in per_s:
            c = preds["stateful-2"]
            extra = {"two_states_cpu_ms_per_audio_s": per_s["stateful-2"],
                     "two_states_ratio": per_s["window"] / per_s["stateful-2"],
                     "two_states_label_agreement": float(np.mean([p.label == q.label for p, q in zip(a, c)]))}
        rows.append({**extra,
            "model": name, "file": Path(path).name, "backend": rec.backend_name, "mode": auto.mode,
            "mode_reason": auto.mode_reason,
            "window_cpu_ms_per_audio_s": per_s["window"], "mode_cpu_ms_per_audio_s": per_s[auto.mode],
            "ratio": per_s["window"] / per_s[auto.mode] if per_s[auto.mode] > 0 else None,
            "hops": len(a), "same_hops": [p.end_s for p in a] == [p.end_s for p in b],
            "label_agreement": float(np.mean([p.label == q.label for p, q in zip(a, b)])) if a else None,
        })
    return {"audio_s": audio_s, "window_s": WINDOW_S, "hop_s": HOP_S, "repeat": repeat, "rows": rows}


def format_markdown(section: Dict[str, Any]) -> str:
    lines = [f"**Streaming: CPU per second of audio ({section['window_s']:g} s window, {section['hop_s']:g} s hop, "
             f"{section['audio_s']:.0f} s of real speech, median of {section['repeat']})**", "",
             "| model | window mode (before) | listen's mode | CPU, that mode | ratio | same labels |",
             "|---|---:|---|---:|---:|---:|"]
    for r in section["rows"]:
        lines.append(f"| {r['model']} | {r['window_cpu_ms_per_audio_s']:.2f} ms | {r['mode']} | "
                     f"{r['mode_cpu_ms_per_audio_s']:.2f} ms | {r['ratio']:.1f}x less | "
                     f"{100 * r['label_agreement']:.1f}% |")
        if "two_states_ratio" in r:
            lines.append(f"| {r['model']} | | stateful, 2 states | {r['two_states_cpu_ms_per_audio_s']:.2f} ms | "
                         f"{r['two_states_ratio']:.1f}x less | {100 * r['two_states_label_agreement']:.1f}% |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path)
    repo = Path(__file__).resolve().parents[1]
    p.add_argument("--data", type=Path, default=Path(os.environ.get(
        "SER_EDGE_SHARED_DATA", repo.parent / "shared" / "data")) / "ravdess-speech-16k")
    p.add_argument("--clips", type=int, default=48)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    from ser_edge.runtime.audio import load_audio

    wavs = sorted(args.data.glob("Actor_*/*.wav"))
    if not wavs:
        raise SystemExit(f"no RAVDESS clips under {args.data}")
    wavs = wavs[::max(1, len(wavs) // args.clips)][:args.clips]
    waves = [load_audio(str(w), 16000) for w in wavs]
    section = bench_stream({m.name: m for m in args.models}, waves, 16000, args.repeat)
    print(format_markdown(section))
    if args.json:
        args.json.write_text(json.dumps(section, indent=2))


if __name__ == "__main__":
    main()
