"""Schema-2 features against librosa, the reference (<= 1e-4 relative): long-frame MFCC, log-mel,
chroma_stft (tuning 0) and deltas (Savitzky-Golay, mode "interp"), on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from ser_edge.runtime.audio import load_audio
from ser_edge.runtime.features import FeatureConfig, delta, power_spectrogram, raw_features
from ser_edge.runtime.features import chroma as chroma_of

librosa = pytest.importorskip("librosa")

CONFIGS = {
    "long-frames": dict(n_fft=4096, win_length=4096, hop_length=2048, window="hann", n_mels=128, n_mfcc=34),
    "shipped": dict(n_fft=1024, win_length=1024, hop_length=512, window="hann", n_mels=64, n_mfcc=40),
    "10ms": dict(),
    "top_db-40": dict(n_fft=1024, win_length=1024, hop_length=512, window="hann", n_mels=64, n_mfcc=40, top_db=40.0),
}


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def reference_power(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    return np.abs(librosa.stft(y.astype(np.float64), n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                               win_length=cfg.win_length, window=cfg.window, center=True,
                               pad_mode="constant")) ** 2


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_feature_matches_librosa(ravdess_wavs, name):
    cfg = FeatureConfig(**CONFIGS[name], n_chroma=12, deltas=2)
    b = cfg.n_mfcc
    for path in ravdess_wavs[::4]:
        y = load_audio(str(path), 16000)
        ours = raw_features(y, cfg)
        S = reference_power(y, cfg)
        mel = librosa.feature.melspectrogram(S=S, sr=16000, n_mels=cfg.n_mels, n_fft=cfg.n_fft)
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=cfg.top_db), n_mfcc=b)
        assert rel(ours[:, :b], mfcc.T) <= 1e-4
        assert rel(ours[:, b:2 * b], librosa.feature.delta(mfcc, order=1).T) <= 1e-4
        assert rel(ours[:, 2 * b:3 * b], librosa.feature.delta(mfcc, order=2).T) <= 1e-4
        chroma = librosa.feature.chroma_stft(S=S, sr=16000, n_fft=cfg.n_fft, tuning=0.0).T
        assert rel(chroma_of(y, cfg), chroma) <= 1e-4  # the chroma itself: librosa's
        # in the model input, frames more than top_db below the loudest (by mel power) are gated to 0
        frame_db = 10 * np.log10(np.maximum(mel.sum(axis=0), 1e-10))
        loud = frame_db >= frame_db.max() - cfg.top_db
        assert 0 < loud.sum() and rel(ours[loud, 3 * b:], chroma[loud]) <= 1e-4
        assert np.all(ours[~loud, 3 * b:] == 0)


@pytest.mark.realdata
def test_log_mel_base_matches_librosa(ravdess_wavs):
    cfg = FeatureConfig(base="logmel", n_mels=64, n_fft=1024, win_length=1024, hop_length=512, window="hann")
    y = load_audio(str(ravdess_wavs[3]), 16000)
    mel = librosa.feature.melspectrogram(S=reference_power(y, cfg), sr=16000, n_mels=64, n_fft=1024)
    ours = raw_features(y, cfg)
    assert ours.shape == (mel.shape[1], cfg.n_features) == (mel.shape[1], 64)
    assert rel(ours, librosa.power_to_db(mel, top_db=80.0).T) <= 1e-4


def test_power_spectrogram_matches_librosa_stft(speechlike):
    cfg = FeatureConfig(n_fft=1024, win_length=1024, hop_length=512, window="hann")
    assert rel(power_spectrogram(speechlike, cfg), reference_power(speechlike, cfg).T) <= 1e-6


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("width", [3, 5, 9])
def test_delta_matches_librosa_interp_mode(order, width):
    x = np.random.default_rng(order * 10 + width).standard_normal((37, 6))
    if width <= order:
        pytest.skip("librosa needs width > order")
    ref = librosa.feature.delta(x.T, width=width, order=order, mode="interp").T
    np.testing.assert_allclose(delta(x, order, width), ref, rtol=1e-9, atol=1e-9)


def test_delta_on_clips_shorter_than_the_window():
    x = np.arange(10.0)[:, None] * 2.0  # slope 2 per frame
    np.testing.assert_allclose(delta(x[:5], 1, 9), 2.0)  # the window shrinks to 5 frames
    assert np.all(delta(x[:2], 1, 9) == 0)  # nothing to fit


def test_chroma_of_a_pure_tone_peaks_at_its_pitch_class():
    sr = 16000
    t = np.arange(sr) / sr
    cfg = FeatureConfig(n_fft=4096, win_length=4096, hop_length=1024, window="hann", n_chroma=12)
    for hz, pitch_class in ((440.0, 9), (261.63, 0), (392.0, 7)):  # A4, C4, G4 (C = 0)
        feats = raw_features((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), cfg)
        assert int(np.bincount(feats[2:-2, cfg.n_mfcc:].argmax(axis=1)).argmax()) == pitch_class
