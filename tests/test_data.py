"""Data layer: corpus layouts, label mapping, speaker splits, the feature store."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ser_edge.data import (
    CANONICAL_LABELS,
    CORPORA,
    DataError,
    FeatureStore,
    Split,
    Utterance,
    check_disjoint,
    load_corpus,
    normalise_label,
    speaker_split,
)
from ser_edge.data import store as store_mod
from ser_edge.data.splits import allocate
from ser_edge.runtime.audio import load_audio, load_clip, write_wav
from ser_edge.runtime.errors import SerEdgeError
from ser_edge.runtime.features import FeatureConfig, mfcc, raw_features

SR = 16000


def _wav(path, seconds: float = 0.12, freq: float = 220.0) -> str:
    """Write a short tone to ``path`` (parents created). Different ``freq`` -> different features."""
    t = np.arange(int(SR * seconds)) / SR
    write_wav(path, 0.3 * np.sin(2 * np.pi * freq * t), SR)
    return str(path)


def _table(utts) -> dict:
    """``{file name: (label, speaker)}``."""
    return {os.path.basename(u.path): (u.label, u.speaker) for u in utts}


def _skipped_names(index) -> dict:
    return {os.path.basename(p): reason for p, reason in index.skipped}


# -- labels ----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, want", [
    ("Anger", "angry"), (" happiness ", "happy"), ("FEAR", "fearful"), ("sadness", "sad"),
    ("surprise", "surprised"), ("pleasant surprise", "surprised"), ("Neutral", "neutral"),
    ("calm", "calm"), ("Bored", "bored"), ("very-tired", "very-tired"),
])
def test_normalise_label(raw, want):
    assert normalise_label(raw) == want


def test_normalise_label_rejects_empty():
    with pytest.raises(DataError):
        normalise_label("  ")


def test_data_error_is_user_facing():
    assert issubclass(DataError, SerEdgeError) and issubclass(DataError, ValueError)


# -- corpus layouts --------------------------------------------------------------------------

def test_ravdess_layout(tmp_path):
    _wav(tmp_path / "Actor_01" / "03-01-05-01-01-01-01.wav")
    _wav(tmp_path / "Actor_12" / "03-01-08-02-02-02-12.wav")
    _wav(tmp_path / "Actor_12" / "03-01-02-01-01-01-12.wav")
    _wav(tmp_path / "Actor_01" / "03-02-03-01-01-01-01.wav")  # song
    _wav(tmp_path / "Actor_01" / "01-01-03-01-01-01-01.wav")  # audio-visual
    _wav(tmp_path / "readme.wav")
    index = load_corpus("ravdess", tmp_path)
    assert _table(index) == {
        "03-01-02-01-01-01-12.wav": ("calm", "Actor_12"),
        "03-01-05-01-01-01-01.wav": ("angry", "Actor_01"),
        "03-01-08-02-02-02-12.wav": ("surprised", "Actor_12"),
    }
    skipped = _skipped_names(index)
    assert set(skipped) == {"03-02-03-01-01-01-01.wav", "01-01-03-01-01-01-01.wav", "readme.wav"}
    assert "song" in skipped["03-02-03-01-01-01-01.wav"]
    assert [u.path for u in index] == sorted(u.path for u in index)
    assert all(os.path.isabs(u.path) and u.corpus == "ravdess" for u in index)


def test_crema_d_layout(tmp_path):
    for name in ("1001_DFA_ANG_XX", "1091_WSI_NEU_XX", "1002_IEO_FEA_HI", "1003_TIE_DIS_LO",
                 "1004_ITS_HAP_MD", "1005_IWL_SAD_XX", "1001_DFA_XYZ_XX", "bad_name"):
        _wav(tmp_path / "AudioWAV" / f"{name}.wav")
    index = load_corpus("CREMA-D", tmp_path)
    assert _table(index) == {
        "1001_DFA_ANG_XX.wav": ("angry", "1001"), "1091_WSI_NEU_XX.wav": ("neutral", "1091"),
        "1002_IEO_FEA_HI.wav": ("fearful", "1002"), "1003_TIE_DIS_LO.wav": ("disgust", "1003"),
        "1004_ITS_HAP_MD.wav": ("happy", "1004"), "1005_IWL_SAD_XX.wav": ("sad", "1005"),
    }
    assert set(_skipped_names(index)) == {"1001_DFA_XYZ_XX.wav", "bad_name.wav"}
    assert load_corpus("cremad", tmp_path) == index  # alias


def test_tess_layout(tmp_path):
    _wav(tmp_path / "OAF_angry" / "OAF_back_angry.wav")
    _wav(tmp_path / "YAF_pleasant_surprised" / "YAF_back_ps.wav")
    _wav(tmp_path / "OAF_Fear" / "OAF_bite_fear.wav")
    _wav(tmp_path / "YAF_disgust" / "YAF_chair_disgust.wav")
    _wav(tmp_path / "OAF_neutral" / "OA_bite_neutral.wav")  # mistyped prefix: folder decides
    _wav(tmp_path / "YAF_sad" / "YAF_bean_sad.wav")
    _wav(tmp_path / "misc" / "XYZ_word_happy.wav")
    _wav(tmp_path / "OAF_happy" / "OAF_back_giggle.wav")
    index = load_corpus("tess", tmp_path)
    assert _table(index) == {
        "OAF_back_angry.wav": ("angry", "OAF"), "YAF_back_ps.wav": ("surprised", "YAF"),
        "OAF_bite_fear.wav": ("fearful", "OAF"), "YAF_chair_disgust.wav": ("disgust", "YAF"),
        "OA_bite_neutral.wav": ("neutral", "OAF"), "YAF_bean_sad.wav": ("sad", "YAF"),
    }
    assert set(_skipped_names(index)) == {"XYZ_word_happy.wav", "OAF_back_giggle.wav"}


def test_emodb_layout(tmp_path):
    for name in ("03a01Fa", "16b10Wb", "10a07Ta", "11b03Ec", "12a05Ab", "13a02Na", "08a02Lc", "notes"):
        _wav(tmp_path / "wav" / f"{name}.wav")
    index = load_corpus("emodb", tmp_path)
    assert _table(index) == {
        "03a01Fa.wav": ("happy", "03"), "16b10Wb.wav": ("angry", "16"), "10a07Ta.wav": ("sad", "10"),
        "11b03Ec.wav": ("disgust", "11"), "12a05Ab.wav": ("fearful", "12"), "13a02Na.wav": ("neutral", "13"),
    }
    skipped = _skipped_names(index)
    assert set(skipped) == {"08a02Lc.wav", "notes.wav"}
    assert "boredom" in skipped["08a02Lc.wav"]


def _iemocap_eval(path, entries) -> None:
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    for utt, code in entries:
        lines += [f"[6.2901 - 8.2357]\t{utt}\t{code}\t[2.5000, 2.5000, 2.5000]",
                  "C-E2:\tNeutral;\t()", "A-E3:\tval 3; act 2; dom  2;\t()", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def test_iemocap_layout(tmp_path):
    s1, s2 = tmp_path / "Session1", tmp_path / "Session2"
    _iemocap_eval(s1 / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt", [
        ("Ses01F_impro01_F000", "neu"), ("Ses01F_impro01_M000", "exc"), ("Ses01F_impro01_F001", "fru"),
        ("Ses01F_impro01_M001", "ang"), ("Ses01F_impro01_F002", "hap")])
    _iemocap_eval(s2 / "dialog" / "EmoEvaluation" / "Ses02M_script01_1.txt", [
        ("Ses02M_script01_1_F003", "sad"), ("Ses02M_script01_1_M004", "xxx")])
    for sess, dialog, utt in [(s1, "Ses01F_impro01", "Ses01F_impro01_F000"),
                              (s1, "Ses01F_impro01", "Ses01F_impro01_M000"),
                              (s1, "Ses01F_impro01", "Ses01F_impro01_F001"),
                              (s1, "Ses01F_impro01", "Ses01F_impro01_F002"),
                              (s2, "Ses02M_script01_1", "Ses02M_script01_1_F003"),
                              (s2, "Ses02M_script01_1", "Ses02M_script01_1_M004")]:
        _wav(sess / "sentences" / "wav" / dialog / f"{utt}.wav")
    index = load_corpus("iemocap", tmp_path)
    assert _table(index) == {
        "Ses01F_impro01_F000.wav": ("neutral", "Ses01F"), "Ses01F_impro01_M000.wav": ("happy", "Ses01M"),
        "Ses01F_impro01_F002.wav": ("happy", "Ses01F"), "Ses02M_script01_1_F003.wav": ("sad", "Ses02F"),
    }
    skipped = _skipped_names(index)
    assert set(skipped) == {"Ses01F_impro01_F001.wav", "Ses01F_impro01_M001.wav", "Ses02M_script01_1_M004.wav"}
    assert "frustration" in skipped["Ses01F_impro01_F001.wav"]
    assert "missing" in skipped["Ses01F_impro01_M001.wav"]


def test_folder_layout(tmp_path):
    _wav(tmp_path / "angry" / "spk1" / "a.wav")
    _wav(tmp_path / "Happiness" / "spk2_001.wav")
    _wav(tmp_path / "bored" / "x-3.wav")
    _wav(tmp_path / "bored" / "plain.wav")
    _wav(tmp_path / "stray.wav")
    _wav(tmp_path / "angry" / "._a.wav")  # macOS metadata
    index = load_corpus("folder", tmp_path)
    assert _table(index) == {
        "a.wav": ("angry", "spk1"), "spk2_001.wav": ("happy", "spk2"),
        "x-3.wav": ("bored", "x"), "plain.wav": ("bored", "plain"),
    }
    assert set(_skipped_names(index)) == {"stray.wav", "._a.wav"}
    assert index.labels() == ["angry", "bored", "happy"]
    assert index.speakers() == ["plain", "spk1", "spk2", "x"]


def test_manifest_layout(tmp_path):
    a = _wav(tmp_path / "clips" / "a.wav")
    b = _wav(tmp_path / "elsewhere" / "b.wav")
    (tmp_path / "manifest.csv").write_text(
        "path,label,speaker,note\n"
        "clips/a.wav,Anger,s1,x\n"
        f"{b},frustrated,s2,absolute path\n"
        "clips/gone.wav,sad,s3,\n"
        "clips/a.wav,,s1,empty label\n")
    index = load_corpus("manifest", tmp_path)
    assert [(u.path, u.label, u.speaker) for u in index] == [(a, "angry", "s1"), (b, "frustrated", "s2")]
    reasons = [r for _, r in index.skipped]
    assert len(reasons) == 2 and any("not found" in r for r in reasons) and any("empty" in r for r in reasons)
    assert load_corpus("manifest", tmp_path / "manifest.csv") == index  # the CSV itself works too


def test_manifest_bad_header(tmp_path):
    (tmp_path / "manifest.csv").write_text("file,emotion\nx.wav,sad\n")
    with pytest.raises(DataError, match="path,label,speaker"):
        load_corpus("manifest", tmp_path)


def test_manifest_dir_without_csv(tmp_path):
    with pytest.raises(DataError, match="manifest.csv"):
        load_corpus("manifest", tmp_path)


# -- errors ----------------------------------------------------------------------------------

def test_unknown_corpus_lists_known(tmp_path):
    with pytest.raises(DataError) as e:
        load_corpus("savee", tmp_path)
    assert all(name in str(e.value) for name in CORPORA)


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_corpus("ravdess", tmp_path / "nope")


def test_root_is_a_file(tmp_path):
    f = _wav(tmp_path / "x.wav")
    with pytest.raises(DataError, match="not a directory"):
        load_corpus("ravdess", f)


@pytest.mark.parametrize("name", ["ravdess", "crema-d", "tess", "emodb", "iemocap", "folder"])
def test_empty_corpus_says_expected_layout(tmp_path, name):
    _wav(tmp_path / "whatever.wav")
    with pytest.raises(DataError, match="expected") as e:
        load_corpus(name, tmp_path)
    assert "\n" not in str(e.value)


# -- splits ----------------------------------------------------------------------------------

def _utts(n_speakers: int, per_speaker: int = 3) -> list:
    return [Utterance(f"/c/s{s:02d}_{i}.wav", CANONICAL_LABELS[i % 8], f"s{s:02d}", "t")
            for s in range(n_speakers) for i in range(per_speaker)]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), seed=st.integers(0, 2**31 - 1),
       ratios=st.sampled_from([(0.8, 0.1, 0.1), (0.7, 0.15, 0.15), (8, 1, 1), (0.5, 0.5, 0.0), (1, 0, 0)]))
def test_speaker_split_properties(n, seed, ratios):
    utts = _utts(n)
    split = speaker_split(utts, ratios, seed=seed)
    check_disjoint(split)
    spk = split.speakers()
    assert sorted(split.train + split.val + split.test, key=lambda u: u.path) == utts
    counts = [len(spk[p]) for p in ("train", "val", "test")]
    total = sum(ratios)
    assert counts == allocate(n, [r / total for r in ratios])
    if n >= 3:
        assert all(c > 0 for c, r in zip(counts, ratios) if r > 0)
    assert all(c == 0 for c, r in zip(counts, ratios) if r == 0)
    shuffled = utts[:]
    random.Random(seed).shuffle(shuffled)
    assert speaker_split(shuffled, ratios, seed=seed).speakers() == spk  # input order is irrelevant


def test_allocate_default_ratios():
    assert allocate(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert allocate(3, (0.8, 0.1, 0.1)) == [1, 1, 1]
    assert sum(allocate(24, (0.8, 0.1, 0.1))) == 24


def test_speaker_split_seed_changes_assignment():
    utts = _utts(20)
    tests = {tuple(speaker_split(utts, seed=s).speakers()["test"]) for s in range(10)}
    assert len(tests) > 1


def test_explicit_speakers_override():
    utts = _utts(10)
    split = speaker_split(utts, seed=3, test_speakers=["s00", "s01"], val_speakers="s09")
    spk = split.speakers()
    assert spk["test"] == ["s00", "s01"] and spk["val"] == ["s09"]
    assert len(spk["train"]) == 7
    only_test = speaker_split(utts, seed=3, test_speakers=["s05"]).speakers()
    assert only_test["test"] == ["s05"] and len(only_test["val"]) == 1 and len(only_test["train"]) == 8


@pytest.mark.parametrize("kwargs", [
    {"test_speakers": ["nobody"]},
    {"test_speakers": ["s01"], "val_speakers": ["s01"]},
    {"ratios": (0.5, -0.5, 1.0)},
    {"ratios": (0, 0, 0)},
    {"ratios": (1, 1)},
])
def test_speaker_split_rejects(kwargs):
    with pytest.raises(DataError):
        speaker_split(_utts(5), **kwargs)


def test_speaker_split_empty():
    with pytest.raises(DataError):
        speaker_split([])


def test_check_disjoint_detects_overlap():
    utts = _utts(3)
    with pytest.raises(DataError, match="speakers in both"):
        check_disjoint(Split(train=utts[:4], val=utts[4:], test=[]))
    same_file = Utterance(utts[0].path, "sad", "other", "t")
    with pytest.raises(DataError, match="files in both"):
        check_disjoint(Split(train=[utts[0]], val=[], test=[same_file]))


# -- feature store ---------------------------------------------------------------------------

@pytest.fixture
def small_corpus(tmp_path):
    """5 readable clips in a folder corpus, plus a corrupt and a truncated one."""
    root = tmp_path / "corpus"
    for i in range(5):
        _wav(root / ("happy" if i % 2 else "sad") / f"s{i % 3}_{i}.wav", 0.1 + 0.02 * i, 150.0 + 60 * i)
    (root / "sad" / "s9_bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    good = (root / "sad" / "s0_0.wav").read_bytes()
    (root / "sad" / "s9_cut.wav").write_bytes(good[: len(good) // 2])  # header promises more
    return load_corpus("folder", root)


class _Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_corrupt_wavs_are_reported_not_raised(small_corpus):
    assert len(small_corpus) == 7  # names parse; the audio problem only shows when reading
    kept, skipped = FeatureStore(FeatureConfig()).load(small_corpus)
    assert len(kept) == 5
    assert {os.path.basename(u.path) for u, _ in skipped} == {"s9_bad.wav", "s9_cut.wav"}
    assert all(reason and os.path.basename(u.path) in reason for u, reason in skipped)


def test_features_match_runtime_and_are_memoised(small_corpus, monkeypatch):
    counter = _Counter(raw_features)
    monkeypatch.setattr(store_mod, "raw_features", counter)
    cfg = FeatureConfig()
    store = FeatureStore(cfg)
    utt = small_corpus[0]
    first = store.features(utt)
    np.testing.assert_array_equal(first, mfcc(load_audio(utt.path, cfg.sample_rate), cfg))
    assert first.dtype == np.float32 and first.shape[1] == cfg.n_mfcc
    assert store.features(utt) is first and counter.calls == 1
    store.load(small_corpus[:3])
    assert counter.calls == 3  # the first one was not recomputed


def test_waveform_is_memoised(small_corpus, monkeypatch):
    counter = _Counter(load_clip)
    monkeypatch.setattr(store_mod, "load_clip", counter)
    store = FeatureStore(FeatureConfig(sample_rate=8000))
    y = store.waveform(small_corpus[0])
    assert y.dtype == np.float32 and y.ndim == 1
    assert store.waveform(small_corpus[0]) is y and counter.calls == 1


def test_disk_cache_hit_across_instances(small_corpus, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cfg = FeatureConfig()
    utts = list(small_corpus[:3])
    first = FeatureStore(cfg, cache_dir=cache)
    want = [first.features(u) for u in utts]
    assert all(os.path.isfile(first.cache_file(u)) for u in utts)
    assert first.stats == {"disk": 0, "computed": 3}

    counter = _Counter(raw_features)
    monkeypatch.setattr(store_mod, "raw_features", counter)
    fitted = cfg.with_stats(np.zeros(cfg.n_mfcc), np.ones(cfg.n_mfcc))  # stats do not change raw MFCC
    second = FeatureStore(fitted, cache_dir=cache)
    for u, w in zip(utts, want):
        np.testing.assert_array_equal(second.features(u), w)
    assert counter.calls == 0 and second.stats == {"disk": 3, "computed": 0}

    other = FeatureStore(FeatureConfig(n_mfcc=20, n_mels=40), cache_dir=cache)
    assert other.features(utts[0]).shape[1] == 20 and counter.calls == 1  # new config: a miss


def test_disk_cache_misses_when_file_changes(small_corpus, tmp_path):
    cache = tmp_path / "cache"
    utt = small_corpus[0]
    store = FeatureStore(FeatureConfig(), cache_dir=cache)
    before = store.features(utt)
    old_file = store.cache_file(utt)
    _wav(utt.path, seconds=0.3, freq=900.0)
    fresh = FeatureStore(FeatureConfig(), cache_dir=cache)
    assert fresh.cache_file(utt) != old_file
    after = fresh.features(utt)
    assert fresh.stats["computed"] == 1 and after.shape[0] > before.shape[0]


def test_damaged_cache_file_is_recomputed(small_corpus, tmp_path):
    cache = tmp_path / "cache"
    utt = small_corpus[0]
    want = FeatureStore(FeatureConfig(), cache_dir=cache).features(utt)
    store = FeatureStore(FeatureConfig(), cache_dir=cache)
    with open(store.cache_file(utt), "wb") as f:
        f.write(b"\x93NUMPY garbage")
    np.testing.assert_array_equal(store.features(utt), want)
    assert store.stats["computed"] == 1
    np.testing.assert_array_equal(np.load(store.cache_file(utt)), want)  # and repaired


def test_parallel_load_equals_serial(small_corpus, tmp_path):
    cfg = FeatureConfig()
    serial = FeatureStore(cfg)
    kept_s, skipped_s = serial.load(small_corpus, workers=1)
    parallel = FeatureStore(cfg, cache_dir=tmp_path / "cache")
    kept_p, skipped_p = parallel.load(small_corpus, workers=2)
    assert kept_p == kept_s and len(kept_p) == 5
    assert [u for u, _ in skipped_p] == [u for u, _ in skipped_s]
    assert [r for _, r in skipped_p] == [r for _, r in skipped_s]
    for u in kept_s:
        np.testing.assert_array_equal(parallel.features(u), serial.features(u))
        assert os.path.isfile(parallel.cache_file(u))  # workers filled the cache
    assert parallel.stats == {"disk": 0, "computed": 5}


# -- real data -------------------------------------------------------------------------------

@pytest.mark.realdata
def test_real_ravdess_corpus(ravdess_root):
    index = load_corpus("ravdess", ravdess_root)
    assert len(index) == 1440 and not index.skipped  # the complete, untrimmed speech set
    assert len(index.speakers()) == 24
    assert index.labels() == sorted(CANONICAL_LABELS)
    split = speaker_split(index, seed=0)
    check_disjoint(split)
    counts = {p: len(s) for p, s in split.speakers().items()}
    assert counts == dict(zip(("train", "val", "test"), allocate(24, (0.8, 0.1, 0.1))))
    assert len(split.train) + len(split.val) + len(split.test) == 1440
