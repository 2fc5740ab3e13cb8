"""The numpy MFCC (``ser_edge.runtime.features``) against librosa, plus FeatureConfig and
RunningStats contracts. librosa is only the reference here; the runtime never imports it."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest

from ser_edge.runtime.audio import read_wav
from ser_edge.runtime.errors import SerEdgeError
from ser_edge.runtime.features import (
    FEATURE_SCHEMA_VERSION,
    FeatureConfig,
    FeatureConfigError,
    RunningStats,
    dct_matrix,
    extract,
    fft_window,
    log_mel,
    mel_filterbank,
    mfcc,
    normalise,
    power_spectrogram,
)

librosa = pytest.importorskip("librosa")

#: Parity bound from the module contract: max |ours - librosa| / max |librosa|.
REL_TOL = 1e-4


def librosa_mfcc(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The reference pipeline the runtime promises to match. ``-> (n_frames, n_mfcc)``."""
    with warnings.catch_warnings():
        # librosa warns when n_fft exceeds a very short input; that case is tested on purpose.
        warnings.simplefilter("ignore", UserWarning)
        ref = librosa.feature.mfcc(
            y=np.asarray(y, dtype=np.float32), sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_fft=cfg.n_fft,
            win_length=cfg.win_length, hop_length=cfg.hop_length, window=cfg.window, center=True,
            pad_mode="constant", n_mels=cfg.n_mels, htk=False, norm="ortho", dct_type=2,
        )
    return ref.T


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours.astype(np.float64) - ref).max() / np.abs(ref).max())


PARAMS = [(13, 400), (13, 512), (40, 400), (40, 512)]


# ---------------------------------------------------------------------------------------
# librosa parity
# ---------------------------------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize("n_mfcc,n_fft", PARAMS)
def test_mfcc_matches_librosa_on_real_speech(ravdess_wavs, n_mfcc, n_fft):
    cfg = FeatureConfig(n_mfcc=n_mfcc, n_fft=n_fft)
    # Every 3rd clip: both actors, several emotions, keeps the test quick.
    for path in ravdess_wavs[::3]:
        y, sr = read_wav(path)
        assert sr == cfg.sample_rate
        ours = mfcc(y, cfg)
        assert ours.dtype == np.float32 and ours.shape == (cfg.n_frames(len(y)), n_mfcc)
        assert rel_err(ours, librosa_mfcc(y, cfg)) <= REL_TOL, path


@pytest.mark.parametrize("n_mfcc,n_fft", PARAMS)
def test_mfcc_matches_librosa_on_synthetic_speech(speechlike, n_mfcc, n_fft):
    cfg = FeatureConfig(n_mfcc=n_mfcc, n_fft=n_fft)
    assert rel_err(mfcc(speechlike, cfg), librosa_mfcc(speechlike, cfg)) <= REL_TOL


def test_mfcc_matches_librosa_with_hann_window(speechlike):
    cfg = FeatureConfig(window="hann")
    assert rel_err(mfcc(speechlike, cfg), librosa_mfcc(speechlike, cfg)) <= REL_TOL


def test_mfcc_matches_librosa_on_silence():
    cfg = FeatureConfig()
    y = np.zeros(8000, dtype=np.float32)
    ours = mfcc(y, cfg)
    assert np.all(np.isfinite(ours))
    assert rel_err(ours, librosa_mfcc(y, cfg)) <= REL_TOL


@pytest.mark.parametrize("n", [1, 100, 399, 511])
def test_short_input_is_finite_and_matches_librosa(n):
    cfg = FeatureConfig()
    y = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    ours = mfcc(y, cfg)
    assert ours.shape == (cfg.n_frames(n), cfg.n_mfcc)
    assert np.all(np.isfinite(ours))
    assert rel_err(ours, librosa_mfcc(y, cfg)) <= REL_TOL


@pytest.mark.parametrize("n", [0, 1, 159, 160])
def test_degenerate_inputs_give_finite_frames(n):
    cfg = FeatureConfig().with_stats(np.zeros(40), np.ones(40))
    out = extract(np.zeros(n, dtype=np.float32), cfg)
    assert out.shape == (1 + n // 160, 40) and out.dtype == np.float32
    assert np.all(np.isfinite(out))


# ---------------------------------------------------------------------------------------
# The blocked, workspace-reusing STFT (runtime/features.py: where the time goes)
# ---------------------------------------------------------------------------------------

def _power_by_definition(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """|rfft(window * frame)|^2 of every centre-padded frame, the obvious float64 way."""
    padded = np.pad(np.asarray(y, dtype=np.float64), cfg.n_fft // 2)
    frames = np.stack([padded[i * cfg.hop_length:i * cfg.hop_length + cfg.n_fft] for i in range(cfg.n_frames(len(y)))])
    return np.abs(np.fft.rfft(frames * fft_window(cfg.window, cfg.win_length, cfg.n_fft), axis=1)) ** 2


@pytest.mark.parametrize("n_fft,win_length,hop,n", [
    (512, 400, 160, 64 * 160 - 1), (512, 400, 160, 64 * 160), (512, 400, 160, 200 * 160 + 77),
    (4096, 4096, 1024, 30000), (4096, 2048, 2048, 50000), (256, 256, 64, 257),
])
def test_power_spectrogram_is_the_definition_across_blocks(n_fft, win_length, hop, n):
    """Lengths that end exactly on, just before and well past a block of frames (64 frames of
    512), long frames."""
    cfg = FeatureConfig(n_fft=n_fft, win_length=win_length, hop_length=hop)
    y = (0.3 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    ref = _power_by_definition(y, cfg)
    np.testing.assert_allclose(power_spectrogram(y, cfg), ref, rtol=1e-9, atol=1e-12 * ref.max())


@pytest.mark.parametrize("cfg", [
    FeatureConfig(n_fft=4096, win_length=4096, hop_length=1024, window="hann"),
    FeatureConfig(n_fft=4096, win_length=4096, hop_length=2048, window="hann", n_mfcc=13),
    FeatureConfig(n_fft=1024, win_length=1024, hop_length=512, n_mels=64, n_mfcc=20),
    FeatureConfig(n_mels=80, n_mfcc=40),
])
def test_mfcc_matches_librosa_for_other_frame_and_band_layouts(speechlike, cfg):
    long = np.concatenate([speechlike] * 4)  # 6 s: several blocks of frames
    assert rel_err(mfcc(long, cfg), librosa_mfcc(long, cfg)) <= REL_TOL


def test_log_mel_matches_librosa(speechlike):
    cfg = FeatureConfig()
    ref = librosa.power_to_db(librosa.feature.melspectrogram(
        y=speechlike, sr=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
        window=cfg.window, center=True, pad_mode="constant", n_mels=cfg.n_mels, htk=False), top_db=cfg.top_db).T
    assert rel_err(log_mel(speechlike, cfg), ref) <= REL_TOL


def test_mfcc_is_thread_safe_and_independent_of_call_order(speechlike):
    """The STFT workspace is per thread and per geometry: interleaving configurations and
    threads gives exactly the results of one call each."""
    from concurrent.futures import ThreadPoolExecutor

    cfgs = [FeatureConfig(), FeatureConfig(n_fft=4096, win_length=4096, hop_length=1024), FeatureConfig(hop_length=80),
            FeatureConfig(win_length=512), FeatureConfig(win_length=256, window="hann")]  # same FFT, other windows
    clips = [speechlike, np.concatenate([speechlike] * 3), speechlike[:5000]]
    expected = {(i, j): mfcc(y, c) for i, c in enumerate(cfgs) for j, y in enumerate(clips)}
    jobs = [(i, j) for _ in range(4) for i in range(len(cfgs)) for j in range(len(clips))]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda ij: mfcc(clips[ij[1]], cfgs[ij[0]]), jobs))
    for ij, got in zip(jobs, results):
        np.testing.assert_array_equal(got, expected[ij])


def test_a_wider_window_leaves_nothing_behind_for_a_narrower_one(speechlike):
    """The reused STFT buffers zero the columns outside the window once; a config with the same
    FFT size but a narrower window must not see what a wider one wrote there."""
    wide, narrow = FeatureConfig(win_length=512), FeatureConfig(win_length=256, window="hann")
    mfcc(speechlike, wide)
    assert rel_err(mfcc(speechlike, narrow), librosa_mfcc(speechlike, narrow)) <= REL_TOL


def test_numpy_1_rfft_path_gives_the_same_features(speechlike, monkeypatch):
    """numpy < 2 has no ``rfft(..., out=)``; the copy it takes instead changes nothing."""
    from ser_edge.runtime import features

    cfg = FeatureConfig()
    expected = mfcc(speechlike, cfg)
    monkeypatch.setattr(features, "_RFFT_HAS_OUT", False)
    np.testing.assert_array_equal(mfcc(speechlike, cfg), expected)


def test_mfcc_of_extreme_levels_stays_finite():
    """Squared magnitudes are float32 for speed; audio so loud they would overflow takes the
    float64 path and gives the same answer as a quiet copy, shifted by the gain in dB (c0 only)."""
    cfg = FeatureConfig(top_db=None)
    y = (0.3 * np.random.default_rng(0).standard_normal(4000)).astype(np.float64)
    quiet, loud = mfcc(y, cfg), mfcc(y * 1e30, cfg)
    assert np.all(np.isfinite(loud))
    shift = np.zeros(cfg.n_mfcc)
    shift[0] = 600.0 * np.sqrt(cfg.n_mels)  # +600 dB in every band, through the orthonormal DCT
    np.testing.assert_allclose(loud, quiet + shift, rtol=1e-5, atol=1e-2)


def test_mfcc_rejects_multichannel_input():
    with pytest.raises(ValueError):
        mfcc(np.zeros((2, 1600), dtype=np.float32), FeatureConfig())


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [
    (16000, 512, 40, 0.0, None),
    (16000, 400, 40, 0.0, None),
    (16000, 512, 64, 20.0, 7600.0),
    (8000, 256, 26, 0.0, None),
])
def test_mel_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False,
                              norm="slaney", dtype=np.float64)
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax if fmax is not None else sr / 2)
    assert ours.shape == ref.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("window", ["hamming", "hann"])
def test_window_matches_librosa(window):
    ref = librosa.util.pad_center(librosa.filters.get_window(window, 400, fftbins=True), size=512)
    np.testing.assert_allclose(fft_window(window, 400, 512), ref, atol=1e-12)


def test_dct_is_orthonormal():
    d = dct_matrix(40, 40)
    np.testing.assert_allclose(d @ d.T, np.eye(40), atol=1e-12)
    # Truncation keeps the leading rows: 13 coefficients are the first 13 of 40.
    np.testing.assert_array_equal(dct_matrix(13, 40), d[:13])


def test_precomputed_matrices_are_read_only():
    # They are lru_cached and shared; an in-place edit would corrupt every later call.
    for arr in (mel_filterbank(16000, 512, 40, 0.0, 8000.0), dct_matrix(40, 40), fft_window("hamming", 400, 512)):
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[(0,) * arr.ndim] = 1.0


def test_top_db_clamps_floor(speechlike):
    cfg = FeatureConfig()
    y = speechlike.copy()
    y[:4000] = 0.0  # a silent stretch: its log-mel would be -100 dB without the clamp
    from ser_edge.runtime.features import log_mel

    db = log_mel(y, cfg)
    assert db.min() >= db.max() - 80.0 - 1e-9
    assert np.isclose(db.min(), db.max() - 80.0)
    unclamped = log_mel(y, dataclasses.replace(cfg, top_db=None))
    assert unclamped.min() < db.min()


# ---------------------------------------------------------------------------------------
# FeatureConfig
# ---------------------------------------------------------------------------------------

def test_default_config_matches_documented_pipeline():
    cfg = FeatureConfig()
    assert (cfg.sample_rate, cfg.n_fft, cfg.win_length, cfg.hop_length, cfg.window, cfg.n_mels) == (
        16000, 512, 400, 160, "hamming", 40)
    assert cfg.f_max == 8000.0 and not cfg.is_normalised
    assert cfg.schema_version == FEATURE_SCHEMA_VERSION


@pytest.mark.parametrize("cfg", [
    FeatureConfig(),
    FeatureConfig(n_mfcc=13, n_fft=400, window="hann", fmin=20.0, fmax=7600.0, top_db=None),
    FeatureConfig(n_mfcc=3).with_stats([1.5, -2.0, 0.25], [1.0, 2.0, 3.0]),
])
def test_json_round_trip_and_hash(cfg):
    text = cfg.to_json()
    json.loads(text)  # plain JSON, embeddable as a model property
    back = FeatureConfig.from_json(text)
    assert back == cfg and hash(back) == hash(cfg)
    assert {cfg: "x"}[back] == "x"
    assert back.to_json() == text


def test_config_is_frozen():
    cfg = FeatureConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_mfcc = 13  # type: ignore[misc]


def test_with_stats_returns_new_hashable_config():
    base = FeatureConfig(n_mfcc=2)
    fitted = base.with_stats(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    assert base.mean is None and fitted.is_normalised
    assert fitted.mean == (1.0, 2.0) and isinstance(fitted.std, tuple)
    assert hash(fitted) != hash(base)


@pytest.mark.parametrize("kwargs", [
    {"window": "blackman"},
    {"n_mfcc": 41},
    {"n_mfcc": 0},
    {"win_length": 600},
    {"hop_length": 0},
    {"fmax": 9000.0},
    {"fmin": 8000.0},
    {"schema_version": FEATURE_SCHEMA_VERSION + 1},
    {"mean": [0.0] * 39, "std": [1.0] * 39},
    {"mean": [0.0] * 40},
    {"mean": [0.0] * 40, "std": [1.0] * 39 + [0.0]},
])
def test_invalid_config_raises(kwargs):
    with pytest.raises(FeatureConfigError):
        FeatureConfig(**kwargs)


def test_feature_config_error_is_user_facing():
    assert issubclass(FeatureConfigError, SerEdgeError) and issubclass(FeatureConfigError, ValueError)


def test_from_json_rejects_bad_documents():
    good = FeatureConfig().to_dict()
    bad_docs = [
        "not json {",
        "[1, 2, 3]",
        json.dumps({**good, "schema_version": 99}),
        json.dumps({k: v for k, v in good.items() if k != "schema_version"}),
        json.dumps({**good, "unknown_field": 1}),
        json.dumps({**good, "window": "kaiser"}),
        json.dumps({**good, "n_mfcc": 80}),
        json.dumps({**good, "mean": [0.0] * 3, "std": [1.0] * 3}),
    ]
    for doc in bad_docs:
        with pytest.raises(FeatureConfigError):
            FeatureConfig.from_json(doc)


def test_schema_version_error_names_versions():
    with pytest.raises(FeatureConfigError, match=str(FEATURE_SCHEMA_VERSION + 1)):
        FeatureConfig.from_json(json.dumps({**FeatureConfig().to_dict(), "schema_version": FEATURE_SCHEMA_VERSION + 1}))


def test_n_frames_matches_output(speechlike):
    for hop in (160, 128):
        cfg = FeatureConfig(hop_length=hop)
        for n in (len(speechlike), len(speechlike) - 1, 16000):
            assert mfcc(speechlike[:n], cfg).shape[0] == cfg.n_frames(n)


# ---------------------------------------------------------------------------------------
# normalisation and RunningStats
# ---------------------------------------------------------------------------------------

def test_normalise_without_stats_is_identity(speechlike):
    cfg = FeatureConfig()
    raw = mfcc(speechlike, cfg)
    np.testing.assert_array_equal(normalise(raw, cfg), raw)
    np.testing.assert_array_equal(extract(speechlike, cfg), raw)


def test_normalise_with_stats(speechlike):
    cfg = FeatureConfig(n_mfcc=13)
    raw = mfcc(speechlike, cfg)
    mean = np.linspace(-200, 10, 13)
    std = np.linspace(50, 2, 13)
    fitted = cfg.with_stats(mean, std)
    out = normalise(raw, fitted)
    assert out.dtype == np.float32 and out.shape == raw.shape
    np.testing.assert_allclose(out, (raw.astype(np.float64) - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(extract(speechlike, fitted), out)
    # works on a batch too: (batch, frames, n_mfcc)
    np.testing.assert_allclose(normalise(np.stack([raw, raw]), fitted)[1], out)


def test_stats_fitted_on_features_standardise_them(speechlike):
    cfg = FeatureConfig()
    raw = mfcc(speechlike, cfg)
    stats = RunningStats()
    stats.update(raw)
    out = extract(speechlike, cfg.with_stats(*stats.result()))
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-3)


def _random_chunks(seed: int):
    rng = np.random.default_rng(seed)
    # Different offsets and scales per chunk so a naive (non-pooled) combination would be wrong.
    return [rng.normal(loc=rng.uniform(-50, 50), scale=rng.uniform(0.5, 20), size=(rng.integers(1, 60), 7))
            for _ in range(rng.integers(2, 9))]


@pytest.mark.parametrize("seed", range(5))
def test_running_stats_equal_numpy(seed):
    chunks = _random_chunks(seed)
    stats = RunningStats()
    for c in chunks:
        stats.update(c)
    allf = np.concatenate(chunks)
    mean, std = stats.result()
    assert stats.n == len(allf)
    np.testing.assert_allclose(mean, allf.mean(axis=0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(std, allf.std(axis=0), rtol=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_running_stats_merge_equals_single_pass(seed):
    chunks = _random_chunks(seed)
    single = RunningStats()
    for c in chunks:
        single.update(c)
    cut = len(chunks) // 2
    a, b = RunningStats(), RunningStats()
    for c in chunks[:cut]:
        a.update(c)
    for c in chunks[cut:]:
        b.update(c)
    a.merge(b)
    assert a.n == single.n
    np.testing.assert_allclose(a.result()[0], single.result()[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a.result()[1], single.result()[1], rtol=1e-10)


def test_running_stats_edge_cases():
    empty = RunningStats()
    with pytest.raises(ValueError):
        empty.result()
    empty.update(np.zeros((0, 3)))
    assert empty.n == 0

    x = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 2.0]])
    s = RunningStats()
    s.update(x)
    # merging an empty accumulator either way is a no-op
    s.merge(RunningStats())
    e = RunningStats()
    e.merge(s)
    for acc in (s, e):
        mean, std = acc.result(eps=1e-3)
        assert mean == (2.0, 5.0, 2.0)
        assert std == (1.0, 1e-3, 1e-3)  # constant columns floored at eps: no division by zero
    # merge copied the arrays: updating one accumulator must not change the other
    e.update(np.full((2, 3), 100.0))
    assert s.result()[0] == (2.0, 5.0, 2.0)


@pytest.mark.parametrize("kwargs", [
    {"n_mfcc": 2, "mean": [float("nan"), 0.0], "std": [1.0, 1.0]},
    {"n_mfcc": 2, "mean": [0.0, 0.0], "std": [1.0, float("inf")]},
    {"top_db": -5.0},
])
def test_invalid_numbers_raise(kwargs):
    with pytest.raises(FeatureConfigError):
        FeatureConfig(**kwargs)
