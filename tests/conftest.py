"""Shared fixtures. Each test module keeps its own private fixtures; only cross-cutting ones live here."""

from __future__ import annotations

import os
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
    """1.5 s of a deterministic voiced, speech-like signal at 16 kHz: ``(24000,) float32``."""
    sr, dur = 16000, 1.5
    t = np.arange(int(sr * dur)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 * (1 - np.cos(2 * np.pi * 3 * t)) * np.hanning(len(t))
    rng = np.random.default_rng(0)
    return (0.2 * y * env + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


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
