"""Shared fixtures. Each test module keeps its own private fixtures; only cross-cutting ones live here."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: Real corpora live beside the checkout (never copied into the repo); tests skip without them.
SHARED_DATA = Path(os.environ.get("SER_EDGE_SHARED_DATA", REPO.parent / "shared" / "data"))
RAVDESS = SHARED_DATA / "ravdess-speech-16k"


def pytest_configure(config):
    # Two cores on CI: one intra-op thread keeps tests from oversubscribing and makes timings
    # and numerics repeatable.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def ravdess_root() -> Path:
    if not RAVDESS.is_dir():
        pytest.skip(f"real RAVDESS data not available at {RAVDESS}")
    return RAVDESS


@pytest.fixture(scope="session")
def ravdess_wavs(ravdess_root) -> list:
    """A fixed handful of real clips: 2 actors x 8 emotions, statement 1, repetition 1."""
    out = []
    for actor in ("Actor_01", "Actor_02"):
        for emo in range(1, 9):
            inten = "01"
            p = ravdess_root / actor / f"03-01-{emo:02d}-{inten}-01-01-{actor[-2:]}.wav"
            if p.exists():
                out.append(p)
    assert len(out) >= 12, "unexpected RAVDESS layout"
    return out


@pytest.fixture(scope="session")
def speechlike() -> np.ndarray:
    """1.5 s of a deterministic voiced, speech-like signal at 16 kHz: ``(24000,) float32``
    (pitch 140 +- 30 Hz)."""
    from ser_edge.runtime.signals import speechlike

    return speechlike(1.5, 16000, f0=140.0, wobble=30.0 / 140.0, seed=0)


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """Factory: ``random_checkpoint(arch="lstm") -> path`` of an untrained but complete checkpoint
    (feature stats set), for export/runtime tests that need a model but not a trained one."""
    torch = pytest.importorskip("torch")
    from ser_edge.checkpoint import Checkpoint, save_checkpoint
    from ser_edge.models import ModelConfig, build_model
    from ser_edge.runtime.features import FeatureConfig

    cache = {}

    def make(arch: str = "lstm", hidden_size: int = 32, num_layers: int = 2, n_classes: int = 4):
        key = (arch, hidden_size, num_layers, n_classes)
        if key not in cache:
            torch.manual_seed(0)
            fcfg = FeatureConfig().with_stats(np.linspace(-300, 5, 40), np.linspace(60, 3, 40))
            mcfg = ModelConfig(arch=arch, n_features=40, n_classes=n_classes, hidden_size=hidden_size,
                               num_layers=num_layers, dropout=0.0)
            labels = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised", "calm"][:n_classes]
            path = tmp_path_factory.mktemp("ckpt") / f"{arch}-{hidden_size}x{num_layers}.pt"
            save_checkpoint(str(path), Checkpoint(mcfg, fcfg, labels, build_model(mcfg).state_dict(),
                                                  {"note": "random init, for tests"}))
            cache[key] = path
        return cache[key]

    return make


@pytest.fixture(scope="session")
def exported_models(random_checkpoint, tmp_path_factory):
    """Factory: ``exported_models(arch="lstm") -> dir`` holding ``model.onnx``, ``model.int8.onnx``
    and ``model.npz``, exported by ``export_all`` from ``random_checkpoint(arch)`` once per session
    and shared by every test that needs a model file. Read-only: copy before changing a file."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from ser_edge.export import export_all

    cache = {}

    def make(arch: str = "lstm") -> Path:
        if arch not in cache:
            out = tmp_path_factory.mktemp(f"models-{arch}")
            with warnings.catch_warnings():
                # untrained weights may miss the int8 gates (a warning with gate=False); only the files matter
                warnings.simplefilter("ignore")
                export_all(str(random_checkpoint(arch)), str(out), formats=("onnx", "numpy"), quantize=True,
                           gate=False)
            cache[arch] = out
        return cache[arch]

    return make
