"""x86 side of ``make test-arm``: build a small model, export it, and record what the runtime
computes on this machine, for tests/arm/ to compare against on emulated aarch64.

    .venv/bin/python scripts/arm/make_reference.py OUT_DIR [--data RAVDESS_DIR] [--archs lstm ...]

Writes into OUT_DIR (inside the rootfs; never into the repository):

* ``wavs/*.wav`` - 3 clips (2 s): real RAVDESS speech when ``--data`` exists, else synthetic
  speech-like signals. One is stored as 44.1 kHz stereo so the device down-mixes and resamples it.
* ``models/<arch>/`` - ``ser_edge.export.export_all`` output (fp32 + int8 ONNX, ``.npz``,
  fp32 + int8 ``.tflite`` when TensorFlow is installed here), for every architecture by default.
* ``reference.npz`` - ``wave/<clip>`` (:func:`read_wav`), ``audio/<clip>`` (at the model rate),
  ``mfcc/<clip>`` (raw MFCC), ``logits/<case>`` ``(n_clips, n_classes)`` from the x86 runtime,
  ``stream/<case>/<mode>`` (the clips streamed back to back) and ``gate/<clip>`` (speech gate).
* ``reference.json`` - host versions, the feature config, the clips and the cases
  (``id``, ``model``, ``backend``, ``quantization``, ``labels``, ``predicted``).

The model is a tiny deterministic one (seed 0, hidden 32) fitted for a few steps on the clips
themselves, so its logits are spread out and a top-1 comparison between machines is meaningful.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

LABELS = ["neutral", "happy", "sad", "angry"]
#: (label, RAVDESS emotion, sample rate, channels): the 44.1 kHz stereo clip exercises the 16-bit
#: stereo down-mix and a common resampling ratio.
CLIPS = [("neutral", 1, 16000, 1), ("happy", 3, 16000, 1), ("angry", 5, 44100, 2)]
CLIP_SECONDS = 2.0
MODEL_EXTS = (".onnx", ".npz", ".tflite")


def log(msg: str) -> None:
    print(f"[arm-ref] {msg}", file=sys.stderr, flush=True)


def ravdess_clip(root: Path, emotion: int) -> np.ndarray:
    """Actor 01, statement 1, repetition 1 (strong intensity except neutral), at 16 kHz."""
    from ser_edge.runtime.audio import load_audio

    intensity = 1 if emotion == 1 else 2
    return load_audio(str(root / "Actor_01" / f"03-01-{emotion:02d}-{intensity:02d}-01-01-01.wav"), 16000)


def synthetic_clip(index: int) -> np.ndarray:
    """Speech-like signal with a class-specific pitch and syllable rate, at 16 kHz."""
    from ser_edge.export.common import speechlike

    return speechlike(4.0, 16000, f0=110.0 + 60.0 * index, syllable_hz=2.0 + 1.5 * index, seed=index)


def middle(y: np.ndarray, seconds: float, sr: int) -> np.ndarray:
    """The central ``seconds`` of ``y`` (RAVDESS clips start and end with silence)."""
    n = int(seconds * sr)
    start = max(0, (len(y) - n) // 2)
    return y[start:start + n]


def write_multichannel(path: Path, channels: List[np.ndarray], sr: int) -> None:
    """16-bit PCM WAV with one column per channel (the runtime writes mono only)."""
    import wave

    from ser_edge.runtime.audio import to_pcm16

    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(np.stack([to_pcm16(c) for c in channels], axis=1).tobytes())


def write_clips(out: Path, data: Path) -> List[dict]:
    """Write the clips as 16-bit WAVs; returns ``[{name, wav, label, sample_rate, source}]``."""
    from ser_edge.runtime.audio import resample, write_wav

    real = (data / "Actor_01").is_dir()
    log(f"clips from {'RAVDESS ' + str(data) if real else 'synthetic speech-like signals'}")
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    clips = []
    for i, (label, emotion, sr, channels) in enumerate(CLIPS):
        y = middle(ravdess_clip(data, emotion) if real else synthetic_clip(i), CLIP_SECONDS, 16000)
        if sr != 16000:
            y = resample(y, 16000, sr)
        wav = f"wavs/{i}-{label}-{sr}.wav"
        if channels == 1:
            write_wav(out / wav, y, sr)
        else:  # the other channels quieter and delayed, so the down-mix is not a copy of one
            write_multichannel(out / wav, [np.roll(y, 7 * c) * (1.0 - 0.2 * c) for c in range(channels)], sr)
        source = f"RAVDESS Actor_01 emotion {emotion:02d}" if real else "synthetic"
        clips.append({"name": f"{i}-{label}", "wav": wav, "label": label, "sample_rate": sr, "source": source})
    return clips


def fit_checkpoint(path: Path, arch: str, clips: List[dict], out: Path) -> None:
    """A deterministic small model: seed 0, normalisation stats from the clips, then 40 Adam steps
    on the clips so that each gets a clearly separated top-1. Saved as a ser-edge checkpoint."""
    import torch

    from ser_edge.checkpoint import Checkpoint, save_checkpoint
    from ser_edge.models import ModelConfig, build_model
    from ser_edge.runtime.audio import load_audio
    from ser_edge.runtime.features import FeatureConfig, RunningStats, mfcc, normalise

    torch.manual_seed(0)
    base = FeatureConfig()
    raw = [mfcc(load_audio(str(out / c["wav"]), base.sample_rate), base) for c in clips]
    stats = RunningStats()
    for m in raw:
        stats.update(m)
    mean, std = stats.result()
    fcfg = base.with_stats(mean, std)
    feats = [normalise(m, fcfg) for m in raw]
    lengths = torch.tensor([len(f) for f in feats], dtype=torch.int64)
    x = torch.zeros(len(feats), int(lengths.max()), fcfg.n_features)
    for i, f in enumerate(feats):
        x[i, :len(f)] = torch.from_numpy(f)
    y = torch.tensor([LABELS.index(c["label"]) for c in clips])

    mcfg = ModelConfig(arch=arch, n_features=fcfg.n_features, n_classes=len(LABELS), hidden_size=32,
                       num_layers=2 if arch == "lstm" else 1, dropout=0.0, conv_channels=16)
    model = build_model(mcfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x, lengths), y)
        loss.backward()
        opt.step()
    log(f"{arch}: fitted, final loss {loss.item():.3f}")
    save_checkpoint(str(path), Checkpoint(mcfg, fcfg, LABELS, model.state_dict(),
                                          {"note": "make test-arm reference model"}))


def export_formats() -> Tuple[str, ...]:
    """ONNX and numpy always; TFLite only where TensorFlow can convert (it is optional)."""
    have_tf = importlib.util.find_spec("tensorflow") is not None
    return ("onnx", "numpy", "tflite") if have_tf else ("onnx", "numpy")


def report_gate_failures(model_dir: Path) -> None:
    """Export runs with ``gate=False`` (this harness tests the platform, not the exporter), so
    say loudly which artifacts missed their parity gate against PyTorch on x86 already."""
    with open(model_dir / "parity.json", encoding="utf-8") as f:
        parity = json.load(f)
    for a in parity.get("artifacts", []):
        if a.get("gate") == "fail":
            log(f"WARNING {model_dir.name}/{a['name']} fails its export parity gate on x86: "
                f"{'; '.join(a.get('failures', []))}")


def model_files(models: Path) -> List[Path]:
    return sorted(p for p in models.rglob("*") if p.suffix in MODEL_EXTS)


def reference_cases(out: Path, models: Path, clips: List[dict], arrays: Dict[str, np.ndarray]) -> List[dict]:
    """Predict every clip with every exported model on this machine (the x86 reference)."""
    from ser_edge.runtime.backends import backend_for_path
    from ser_edge.runtime.recognizer import Recognizer
    from ser_edge.runtime.selftest import run_selftest

    cases = []
    for path in model_files(models):
        backend = backend_for_path(str(path))
        rec = Recognizer.load(str(path), backend=backend, threads=1)
        preds = [rec.predict(str(out / c["wav"])) for c in clips]
        rel = path.relative_to(out).as_posix()
        case_id = f"{path.parent.name}-{path.name.replace('model.', '', 1)}"  # e.g. lstm-int8.onnx
        arrays["logits/" + case_id] = np.stack([p.logits for p in preds])
        st = run_selftest(rec)  # recorded so an aarch64 self-test failure can say if x86 fails too
        cases.append({"id": case_id, "model": rel, "backend": backend,
                      "quantization": rec.metadata.quantization, "labels": rec.labels,
                      "predicted": [p.label for p in preds],
                      "selftest_x86": {"passed": st.passed, "max_abs_diff": st.max_abs_diff, "atol": st.atol}})
        log(f"{case_id:28s} {backend:12s} {' '.join(p.label for p in preds):24s} "
            f"self-test {'ok' if st.passed else 'FAILED'} ({st.max_abs_diff:.1e} <= {st.atol:.1e}?)")
    return cases


#: Streaming reference (tests/arm/test_stream_arm.py): the clips back to back, 1 s windows, 0.5 s hops.
STREAM_WINDOW_S, STREAM_HOP_S = 1.0, 0.5


def stream_reference(out: Path, cases: List[dict], clips: List[dict], arrays: Dict[str, np.ndarray]) -> List[dict]:
    """Stream the clips back to back through every ONNX / numpy case in each mode its model
    allows; ``stream/<case>/<mode>`` = ``(n_hops, n_classes)`` logits (NaN rows: no speech),
    plus ``gate/<clip>`` = the speech gate's measures ``(level_db, dynamic_db, zcr)``."""
    from ser_edge.runtime.audio import load_audio
    from ser_edge.runtime.recognizer import Recognizer
    from ser_edge.runtime.vad import gate_measures

    rows = []
    for case in cases:
        if case["backend"] not in ("onnxruntime", "numpy"):
            continue
        rec = Recognizer.load(str(out / case["model"]), backend=case["backend"], threads=1)
        y = np.concatenate([load_audio(str(out / c["wav"]), rec.sample_rate) for c in clips])
        modes = ["window", "incremental"] + (["stateful"] if rec.stream().mode == "stateful" else [])
        for mode in modes:
            stream = rec.stream(window_s=STREAM_WINDOW_S, hop_s=STREAM_HOP_S, smoothing="none", mode=mode)
            preds = stream.push(y) + stream.flush()
            arrays[f"stream/{case['id']}/{mode}"] = np.stack([p.logits for p in preds])
        rows.append({"id": case["id"], "model": case["model"], "backend": case["backend"],
                     "quantization": case["quantization"], "modes": modes})
        log(f"{case['id']:28s} streamed: {', '.join(modes)}")
    for c in clips:
        m = gate_measures(load_audio(str(out / c["wav"]), 16000), 16000)
        arrays["gate/" + c["name"]] = np.array([m["level_db"], m["dynamic_db"], m["zcr"]])
    return rows


def host_info() -> dict:
    info = {"machine": platform.machine(), "python": platform.python_version()}
    for dist, key in (("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("ai-edge-litert", "ai_edge_litert"),
                      ("torch", "torch")):
        try:
            info[key] = version(dist)
        except PackageNotFoundError:  # not on this host: the arm test skips that comparison
            info[key] = None
    return info


def make_reference(out: Path, data: Path, archs: Sequence[str], formats: Sequence[str]) -> dict:
    from ser_edge.export import export_all
    from ser_edge.runtime.audio import load_audio, read_wav
    from ser_edge.runtime.features import FeatureConfig, mfcc
    from ser_edge.runtime.io import atomic_write_json

    out.mkdir(parents=True, exist_ok=True)
    clips = write_clips(out, data)
    with tempfile.TemporaryDirectory(prefix="ser-edge-arm-ckpt-") as tmp:
        for arch in archs:
            ckpt = Path(tmp) / f"{arch}.pt"
            fit_checkpoint(ckpt, arch, clips, out)
            t0 = time.perf_counter()
            export_all(str(ckpt), str(out / "models" / arch), formats=formats, quantize=True, gate=False)
            log(f"{arch}: exported {', '.join(formats)} (+int8) in {time.perf_counter() - t0:.1f} s")
            report_gate_failures(out / "models" / arch)

    # Features with the models' own config (identical for every arch: stats come from the clips).
    from ser_edge.runtime.recognizer import Recognizer

    fcfg: FeatureConfig = Recognizer.load(str(model_files(out / "models")[0])).feature_config
    arrays: Dict[str, np.ndarray] = {}
    for c in clips:
        arrays["wave/" + c["name"]] = read_wav(str(out / c["wav"]))[0]
        audio = load_audio(str(out / c["wav"]), fcfg.sample_rate)
        arrays["audio/" + c["name"]] = audio
        arrays["mfcc/" + c["name"]] = mfcc(audio, fcfg)
    cases = reference_cases(out, out / "models", clips, arrays)
    stream_cases = stream_reference(out, cases, clips, arrays)
    np.savez(out / "reference.npz", **arrays)
    ref = {"host": host_info(), "feature_config": fcfg.to_json(), "clips": clips, "cases": cases,
           "export_formats": list(formats), "stream_cases": stream_cases}
    atomic_write_json(out / "reference.json", ref)
    return ref


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ser_edge.models import ARCHITECTURES  # every architecture, so aarch64 checks them all

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    shared = Path(os.environ.get("SER_EDGE_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    p.add_argument("--data", type=Path, default=shared / "ravdess-speech-16k")
    p.add_argument("--archs", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    p.add_argument("--formats", nargs="+", choices=["onnx", "numpy", "tflite"],
                   help="export formats (default: onnx numpy, plus tflite when TensorFlow is installed)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # 2-core CI; also keeps the reference numerics repeatable
    ref = make_reference(args.out, args.data, args.archs, tuple(args.formats or export_formats()))
    log(f"{len(ref['clips'])} clips x {len(ref['cases'])} cases -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
