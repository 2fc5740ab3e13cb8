"""The built-in synthetic corpus (``ser_edge.data.synth``) and the ``ser-edge data`` commands."""

from __future__ import annotations

import csv
import hashlib
import os

import numpy as np
import pytest

from ser_edge.data import DataError, load_corpus
from ser_edge.data.labels import CANONICAL_LABELS
from ser_edge.data.synth import EMOTION_PROSODY, MAX_SECONDS, MIN_SECONDS, make_speaker, synth_clip, synth_corpus
from ser_edge.runtime.audio import read_wav
from ser_edge.runtime.features import FeatureConfig, mfcc

SR = 16000


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> str:
    """2 speakers x 8 labels x 2 clips, default seed."""
    root = tmp_path_factory.mktemp("synth_small")
    synth_corpus(root, n_speakers=2, per_class=2)
    return str(root)


def _digest(root: str) -> dict:
    """``{relative path: sha256}`` of every file under ``root``."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


# ---------------------------------------------------------------------------------------
# prosody estimators (test-side, deliberately independent of the generator)
# ---------------------------------------------------------------------------------------

def f0_estimate(y: np.ndarray, sr: int = SR) -> float:
    """Median F0 (Hz) over confidently voiced 40 ms frames, by normalised autocorrelation."""
    n, hop = int(0.04 * sr), int(0.01 * sr)
    frames = np.lib.stride_tricks.sliding_window_view(y.astype(np.float64), n)[::hop]
    energy = (frames ** 2).sum(axis=1)
    frames = frames[energy > 0.1 * energy.max()]
    frames = frames - frames.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(frames * np.hanning(n), 2 * n, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :n]
    ac /= ac[:, :1]
    lo, hi = int(sr / 450), int(sr / 60)
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    strength = ac[np.arange(len(ac)), lag]
    return float(np.median(sr / lag[strength > 0.4]))


def active_rms_db(y: np.ndarray) -> float:
    """RMS in dBFS of the 10 ms frames within 30 dB of the loudest (the 'speech')."""
    e = np.mean(y[: len(y) // 160 * 160].reshape(-1, 160).astype(np.float64) ** 2, axis=1)
    return float(10 * np.log10(np.mean(e[e > e.max() * 1e-3])))


def spectral_centroid(y: np.ndarray, sr: int = SR) -> float:
    """Energy-weighted mean frequency of the whole clip (Hz): brightness."""
    p = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(y), 1.0 / sr)
    return float((p * f).sum() / p.sum())


# ---------------------------------------------------------------------------------------
# the corpus on disk
# ---------------------------------------------------------------------------------------

def test_counts_layout_and_manifest(small):
    manifest = os.path.join(small, "manifest.csv")
    with open(manifest, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "label", "speaker"]
    body = rows[1:]
    assert len(body) == 2 * len(CANONICAL_LABELS) * 2
    speakers = sorted({r[2] for r in body})
    assert speakers == ["synth01", "synth02"]
    for spk in speakers:  # every speaker has every label, per_class times
        for label in CANONICAL_LABELS:
            assert sum(1 for r in body if r[1] == label and r[2] == spk) == 2
    for path, label, speaker in body:
        assert not os.path.isabs(path) and path.startswith(speaker + "/") and f"_{label}_" in path
        assert os.path.isfile(os.path.join(small, path))
    assert len({r[0] for r in body}) == len(body)
    # nothing else but the listed WAVs, the manifest and the README (no temp files left)
    listed = {os.path.normpath(r[0]) for r in body} | {"manifest.csv", "README.txt"}
    assert set(_digest(small)) == listed


def test_readme_says_synthetic(small):
    with open(os.path.join(small, "README.txt"), encoding="utf-8") as f:
        text = f.read()
    assert "SYNTHETIC" in text and "NOT SPEECH" in text
    assert "seed: 0" in text and "manifest.csv" in text


def test_loadable_as_manifest_corpus(small):
    index = load_corpus("manifest", small)
    assert len(index) == 32 and not index.skipped
    assert index.speakers() == ["synth01", "synth02"]
    assert sorted(index.labels()) == sorted(CANONICAL_LABELS)
    for u in index:
        assert os.path.isabs(u.path) and os.path.basename(os.path.dirname(u.path)) == u.speaker
    # the manifest file itself works as the root too
    assert len(load_corpus("manifest", os.path.join(small, "manifest.csv"))) == 32


def test_wavs_are_16bit_within_range_and_length(small):
    index = load_corpus("manifest", small)
    for u in index:
        with open(u.path, "rb") as f:
            head = f.read(44)
        assert head[34:36] == (16).to_bytes(2, "little")  # bits per sample
        y, sr = read_wav(u.path)
        assert sr == SR
        assert MIN_SECONDS <= len(y) / sr <= MAX_SECONDS
        assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0
        assert np.abs(y).max() > 0.01  # not silence


def test_deterministic_for_a_seed(small, tmp_path):
    again = tmp_path / "again"
    synth_corpus(again, n_speakers=2, per_class=2)
    assert _digest(str(again)) == _digest(small)
    other = tmp_path / "other"
    synth_corpus(other, n_speakers=2, per_class=1, seed=1)
    a, b = _digest(small), _digest(str(other))
    shared = [k for k in b if k.endswith(".wav")]
    assert len(shared) == 16 and all(k in a for k in shared)
    assert all(a[k] != b[k] for k in shared)


def test_more_clips_keep_the_existing_ones(small, tmp_path):
    # Each clip depends only on (seed, speaker, label, index): a bigger corpus extends a smaller.
    big = tmp_path / "big"
    synth_corpus(big, n_speakers=3, per_class=3, labels=("sad", "angry"))
    small_d, big_d = _digest(small), _digest(str(big))
    shared = [k for k in big_d if k in small_d and k.endswith(".wav")]
    assert len(shared) == 2 * 2 * 2
    assert all(big_d[k] == small_d[k] for k in shared)


def test_label_subset_and_sample_rate(tmp_path):
    manifest = synth_corpus(tmp_path, n_speakers=1, per_class=1, labels=("angry", "sad"), sample_rate=8000)
    index = load_corpus("manifest", manifest)
    assert sorted(u.label for u in index) == ["angry", "sad"]
    for u in index:
        y, sr = read_wav(u.path)
        assert sr == 8000 and MIN_SECONDS <= len(y) / sr <= MAX_SECONDS


@pytest.mark.parametrize("kwargs", [
    {"n_speakers": 0},
    {"per_class": 0},
    {"n_speakers": 100},
    {"labels": ()},
    {"labels": ("angry", "bored")},
    {"labels": ("angry", "angry")},
    {"sample_rate": 4000},
    {"seed": -1},
])
def test_bad_arguments_raise_data_error(tmp_path, kwargs):
    with pytest.raises(DataError):
        synth_corpus(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x" / "manifest.csv").exists()


def test_out_dir_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("not a directory")
    with pytest.raises(DataError, match="not a directory"):
        synth_corpus(target, n_speakers=1, per_class=1)


def test_every_canonical_label_has_prosody():
    assert set(EMOTION_PROSODY) == set(CANONICAL_LABELS)


# ---------------------------------------------------------------------------------------
# the signal: per-emotion prosody really differs, speakers really differ
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clips() -> dict:
    """``{(speaker, label): [clip, ...]}`` for 4 speakers x 4 labels x 3 clips."""
    return {(s, lab): [synth_clip(s, lab, i) for i in range(3)]
            for s in range(4) for lab in ("angry", "sad", "neutral", "calm")}


def test_clip_is_finite_float32_in_range(clips):
    for ys in clips.values():
        for y in ys:
            assert y.dtype == np.float32 and y.ndim == 1
            assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0
            assert MIN_SECONDS * SR <= len(y) <= MAX_SECONDS * SR


def test_synth_clip_matches_written_file(small):
    y, _ = read_wav(os.path.join(small, "synth02", "synth02_happy_001.wav"))
    np.testing.assert_allclose(y, synth_clip(1, "happy", 1), atol=1 / 32768 + 1e-7)


def test_angry_is_higher_louder_brighter_than_sad_for_every_speaker(clips):
    for s in range(4):
        angry, sad = clips[(s, "angry")], clips[(s, "sad")]
        f0_a, f0_s = np.mean([f0_estimate(y) for y in angry]), np.mean([f0_estimate(y) for y in sad])
        assert f0_a > 1.2 * f0_s, (s, f0_a, f0_s)  # the table says +4 vs -2 semitones
        lvl_a, lvl_s = np.mean([active_rms_db(y) for y in angry]), np.mean([active_rms_db(y) for y in sad])
        assert lvl_a > lvl_s + 6.0, (s, lvl_a, lvl_s)
        c_a, c_s = np.mean([spectral_centroid(y) for y in angry]), np.mean([spectral_centroid(y) for y in sad])
        assert c_a > c_s, (s, c_a, c_s)


def test_f0_estimate_tracks_speaker_pitch(clips):
    # Even-indexed speakers are the low voices: their neutral F0 sits near their base F0.
    for s in range(4):
        est = np.median([f0_estimate(y) for y in clips[(s, "neutral")]])
        base = make_speaker(s, 0).f0
        assert 0.7 * base < est < 1.5 * base, (s, est, base)
    low = np.mean([f0_estimate(y) for s in (0, 2) for y in clips[(s, "neutral")]])
    high = np.mean([f0_estimate(y) for s in (1, 3) for y in clips[(s, "neutral")]])
    assert high > 1.3 * low


def _clip_features(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    m = mfcc(y, cfg)
    return np.concatenate([m.mean(axis=0), m.std(axis=0)])


def test_learnable_across_speakers_but_not_trivial():
    """Leave-one-speaker-out nearest class mean on per-speaker-normalised MFCC statistics,
    8 classes, 3 training speakers x 2 clips per class: well above the 12.5 % of guessing, yet
    not perfect (the classes overlap, as real emotions do). Measured: 0.56 (seed 0)."""
    cfg = FeatureConfig(n_mfcc=20)
    n_spk, per = 4, 2
    X, y, spk = [], [], []
    for s in range(n_spk):
        for li, lab in enumerate(CANONICAL_LABELS):
            for i in range(per):
                X.append(_clip_features(synth_clip(s, lab, i), cfg))
                y.append(li)
                spk.append(s)
    X, y, spk = np.array(X), np.array(y), np.array(spk)
    for s in range(n_spk):  # speaker normalisation (unsupervised: no labels of the test speaker)
        X[spk == s] = (X[spk == s] - X[spk == s].mean(axis=0)) / (X[spk == s].std(axis=0) + 1e-6)
    correct = 0
    for s in range(n_spk):
        tr, te = spk != s, spk == s
        centroids = np.stack([X[tr & (y == c)].mean(axis=0) for c in range(len(CANONICAL_LABELS))])
        d = ((X[te][:, None, :] - centroids[None]) ** 2).sum(axis=-1)
        correct += int((d.argmin(axis=1) == y[te]).sum())
    acc = correct / len(y)
    assert 0.3 < acc < 0.97, acc


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------

def test_cli_synth_and_info(tmp_path):
    from typer.testing import CliRunner

    from ser_edge.cli import data

    runner = CliRunner()
    out = tmp_path / "corpus"
    res = runner.invoke(data.app, ["synth", str(out), "--speakers", "2", "--per-class", "1", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "16 synthetic clips" in res.output and "manifest.csv" in res.output
    assert len(load_corpus("manifest", out)) == 16

    # a stray unlisted-but-listed row: info reports it as skipped
    with open(out / "manifest.csv", "a") as f:
        f.write("synth01/missing.wav,angry,synth01\n")
    res = runner.invoke(data.app, ["info", "--data", "manifest", "--root", str(out)])
    assert res.exit_code == 0, res.output
    assert "utterances: 16" in res.output and "speakers: 2" in res.output
    for label in CANONICAL_LABELS:
        assert f"{label}" in res.output
    assert "skipped: 1" in res.output and "missing.wav" in res.output


def test_cli_info_bad_corpus_is_a_user_error(tmp_path):
    from typer.testing import CliRunner

    from ser_edge.cli import data

    res = CliRunner().invoke(data.app, ["info", "--data", "manifest", "--root", str(tmp_path / "nowhere")])
    assert res.exit_code != 0
    assert isinstance(res.exception, DataError)
