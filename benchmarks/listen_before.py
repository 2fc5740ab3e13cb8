"""``listen`` now against ``listen`` as it was when issue 10 was filed, on the same model and audio,
in one run: CPU per second of audio and hop-by-hop label agreement.

Issue 10's target is relative to the code of its day ("``listen`` on a unidirectional model uses
<= 1/4 of today's CPU per second of audio"). That code re-featurised and re-classified the whole
2 s window at every 0.5 s hop. ``benchmarks/_stream.py`` compares today's modes with today's
window mode (same kernels, so it isolates what streaming saves); this script compares with the
old code itself, taken from git::

    python benchmarks/listen_before.py [MODEL ...] [--commit e66fcec] [--data DIR] [--clips 48] [--repeat 3]

MODEL defaults to ``tests/data/stream-lstm-ravdess.npz`` (a trained unidirectional LSTM, schema-1
MFCC features, which both versions read); ``tests/data/stream-lstm-ravdess.int8.onnx`` is the same
model for onnxruntime (its stateful graph beside it). The old tree is extracted with ``git archive`` into a
temporary directory and laid out as the installed package (``ser_edge``, ``ser_edge.runtime``,
``ser_edge.export``). Each measurement is a fresh subprocess (the two versions share a package
name) that loads the model, streams 5 s untimed, then times (user + system CPU of the process)
pushing the whole recording in 0.1 s chunks with smoothing off; runs alternate old/new and the
medians are compared. One thread (``OMP_NUM_THREADS=1``). Exit status 2 with one line when the
commit is not in this clone (a shallow CI clone: ``git fetch --unshallow``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

REPO = Path(__file__).resolve().parent.parent
#: The last commit before issue 10's work landed: the code the issue measured.
ISSUE_10_BASE = "e66fcec"
DEFAULT_MODEL = REPO / "tests" / "data" / "stream-lstm-ravdess.npz"

_CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from ser_edge.runtime import Recognizer
y = np.load(sys.argv[3])
rec = Recognizer.load(sys.argv[2], threads=1)

def run(audio):
    stream = rec.stream(window_s=2.0, hop_s=0.5, smoothing="none")
    preds = []
    t0 = time.process_time()
    for i in range(0, len(audio), 1600):
        preds += stream.push(audio[i:i + 1600])
    return time.process_time() - t0, preds, stream

run(y[:5 * rec.sample_rate])
cpu, preds, stream = run(y)
print(json.dumps({"cpu_s": cpu, "labels": [p.label for p in preds],
                  "mode": getattr(stream, "mode", "window (the only mode then)"),
                  "runtime": sys.modules["ser_edge.runtime"].__file__}))
"""


def old_tree(commit: str, dest: Path) -> Path:
    """``git archive`` of ``commit``'s package directories into ``dest``, laid out as installed.
    -> the directory to put on ``sys.path``. Raises ``SystemExit(2)`` when the commit is absent."""
    src = dest / "src"
    src.mkdir()
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "ser_edge", "runtime", "export"],
                                 check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        detail = e.stderr.decode(errors="replace").strip() if isinstance(e, subprocess.CalledProcessError) else e
        raise SystemExit(f"error: cannot read commit {commit} from git ({detail}); a shallow clone needs "
                         "`git fetch --unshallow`") from None
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    return package_layout(src, dest / "pkg")


def new_tree(dest: Path) -> Path:
    """This checkout laid out the same way (so both sides import the same way)."""
    return package_layout(REPO, dest / "new")


def package_layout(src: Path, root: Path) -> Path:
    """``root/ser_edge`` as setuptools' package-dir installs it: ``src/ser_edge/*`` with
    ``src/runtime`` and ``src/export`` as its ``runtime`` and ``export`` (symlinks). -> ``root``."""
    pkg = root / "ser_edge"
    pkg.mkdir(parents=True)
    for item in (src / "ser_edge").iterdir():
        (pkg / item.name).symlink_to(item)
    (pkg / "runtime").symlink_to(src / "runtime")
    (pkg / "export").symlink_to(src / "export")
    return root


def measure(path: Path, model: Path, audio: Path) -> Dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(model), str(audio)],
                         check=True, capture_output=True, text=True, env=env, cwd=str(path.parent)).stdout
    return json.loads(out.strip().splitlines()[-1])


def recording(data: Path, n_clips: int) -> np.ndarray:
    """Every 30th RAVDESS clip (actors and emotions), back to back, at 16 kHz. ``(n,) float32``."""
    sys.path.insert(0, str(REPO))
    from ser_edge.runtime.audio import load_audio

    wavs = sorted(data.glob("Actor_*/*.wav"))[::30][:n_clips]
    if not wavs:
        raise SystemExit(f"error: no RAVDESS WAVs under {data}")
    return np.concatenate([load_audio(str(w), 16000) for w in wavs])


def compare(model: Path, old: Path, new: Path, audio: Path, seconds: float, repeat: int) -> Dict[str, Any]:
    runs: Dict[str, List[Dict[str, Any]]] = {"before": [], "now": []}
    for r in range(repeat):
        for side in (("before", "now") if r % 2 == 0 else ("now", "before")):
            runs[side].append(measure(old if side == "before" else new, model, audio))
    per_s = {side: 1e3 * statistics.median(x["cpu_s"] for x in v) / seconds for side, v in runs.items()}
    a, b = runs["before"][0]["labels"], runs["now"][0]["labels"]
    return {"model": str(model), "before_ms_per_audio_s": per_s["before"], "now_ms_per_audio_s": per_s["now"],
            "ratio": per_s["before"] / per_s["now"], "mode_now": runs["now"][0]["mode"],
            "predictions": [len(a), len(b)],
            "same_labels": float(np.mean([x == y for x, y in zip(a, b)])) if len(a) == len(b) else None,
            "cpu_s": {side: [x["cpu_s"] for x in v] for side, v in runs.items()}}


def run(models: List[Path], y: np.ndarray, commit: str = ISSUE_10_BASE, repeat: int = 3) -> List[Dict[str, Any]]:
    """:func:`compare` for each model on the 16 kHz recording ``y``, the commit's tree and this
    checkout laid out in a temporary directory. Raises ``SystemExit`` when the commit is absent."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        old, new = old_tree(commit, tmp_path), new_tree(tmp_path)
        audio = tmp_path / "audio.npy"
        np.save(audio, y)
        return [compare(m.resolve(), old, new, audio, len(y) / 16000, repeat) for m in models]


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", type=Path, default=[DEFAULT_MODEL])
    ap.add_argument("--commit", default=ISSUE_10_BASE)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ravdess-speech-16k")
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    y = recording(args.data, args.clips)
    seconds = len(y) / 16000
    rows = run(args.models, y, args.commit, args.repeat)
    print(f"**listen now vs listen at {args.commit} (issue 10 filed): CPU per second of audio, 2 s window, "
          f"0.5 s hop, {seconds:.0f} s of real speech, median of {args.repeat}**\n")
    print("| model | before (window recomputed every hop) | now | listen's mode now | ratio | same labels |")
    print("|---|---:|---:|---|---:|---:|")
    for r in rows:
        same = "-" if r["same_labels"] is None else f"{100 * r['same_labels']:.1f}%"
        print(f"| {Path(r['model']).name} | {r['before_ms_per_audio_s']:.2f} ms | {r['now_ms_per_audio_s']:.2f} ms | "
              f"{r['mode_now']} | {r['ratio']:.1f}x less | {same} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"commit": args.commit, "audio_s": seconds, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
