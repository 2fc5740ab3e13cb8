"""Writes ``stream-lstm-ravdess.npz``: the tiny trained LSTM that tests/test_stream.py uses to
check that the stateful streaming mode labels real speech like the window mode, and the same
model as int8 ONNX with its stateful graph (``stream-lstm-ravdess.int8.onnx`` and
``.int8.stream.onnx``), which the benchmarks stream through onnxruntime.

A random-init model is useless for that check (it gives one or two labels for everything, so
any two modes "agree"); this one is fitted on 16 RAVDESS clips (actors 01-02, statement 1,
repetition 1, normal intensity, the 8 emotions) and the test streams *other* actors, where it
uses all 8 labels. Deterministic (seed 0, 300 Adam steps, hidden 32 x 2 layers, schema-1 MFCC);
about 3 minutes on 2 cores::

    .venv/bin/python tests/data/make_stream_lstm.py ../shared/data/ravdess-speech-16k
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import torch

from ser_edge.checkpoint import Checkpoint, save_checkpoint
from ser_edge.export import export_all
from ser_edge.models import ModelConfig, build_model
from ser_edge.runtime.audio import load_audio
from ser_edge.runtime.features import FeatureConfig, RunningStats, extract, raw_features

LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def main(root: str) -> None:
    torch.manual_seed(0)
    wavs = [f"{root}/Actor_{a:02d}/03-01-{e:02d}-01-01-01-{a:02d}.wav" for a in (1, 2) for e in range(1, 9)]
    base = FeatureConfig(schema_version=1)
    waves = [load_audio(w, 16000) for w in wavs]
    stats = RunningStats()
    for y in waves:
        stats.update(raw_features(y, base))
    fcfg = base.with_stats(*stats.result())
    feats = [extract(y, fcfg) for y in waves]
    lengths = torch.tensor([len(f) for f in feats])
    x = torch.zeros(len(feats), int(lengths.max()), fcfg.n_features)
    for i, f in enumerate(feats):
        x[i, :len(f)] = torch.from_numpy(f)
    target = torch.tensor([i % 8 for i in range(len(wavs))])
    mcfg = ModelConfig(arch="lstm", n_features=fcfg.n_features, n_classes=8, hidden_size=32, num_layers=2, dropout=0.0)
    model = build_model(mcfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x, lengths), target)
        loss.backward()
        opt.step()
    print(f"final training loss {loss.item():.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "c.pt")
        save_checkpoint(ckpt, Checkpoint(mcfg, fcfg, LABELS, model.state_dict(), {"note": "streaming test fixture"}))
        export_all(ckpt, tmp, formats=("numpy", "onnx"), quantize=True, gate=False)
        here = os.path.dirname(__file__)
        for src, dst in (("model.npz", "stream-lstm-ravdess.npz"), ("model.int8.onnx", "stream-lstm-ravdess.int8.onnx"),
                         ("model.int8.stream.onnx", "stream-lstm-ravdess.int8.stream.onnx")):
            shutil.copy(os.path.join(tmp, src), os.path.join(here, dst))


if __name__ == "__main__":
    main(sys.argv[1])
