"""Speaker-disjoint cross-validation: fold assignment, the harness end to end on the synthetic
corpus (kept small so CI runs it every time), resumption, and the summary it writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ser_edge.config import TrainConfig, TrainError
from ser_edge.cv import CVOptions, make_folds, natural_key, pick_val, run_cv
from ser_edge.data import DataError, synth_corpus

ACTORS = [f"Actor_{i:02d}" for i in range(1, 25)]


def test_five_folds_deal_actors_round_robin():
    folds = make_folds(list(reversed(ACTORS)), "5")
    assert folds[0] == ["Actor_01", "Actor_06", "Actor_11", "Actor_16", "Actor_21"]
    assert folds[4] == ["Actor_05", "Actor_10", "Actor_15", "Actor_20"]
    assert sorted(s for f in folds for s in f) == ACTORS  # a partition


def test_natural_sort_and_other_fold_specs():
    assert sorted(["s10", "s9", "s1"], key=natural_key) == ["s1", "s9", "s10"]
    assert make_folds(["b", "a", "c"], "loso") == [["a"], ["b"], ["c"]]
    assert make_folds(["a", "b", "c", "d"], "a,b;c") == [["a", "b"], ["c"]]
    for bad in ("1", "5", "a;zz", "a,b;b,c", "a"):
        with pytest.raises(DataError):
            make_folds(["a", "b", "c", "d"], bad)


def test_validation_speakers_come_from_training_speakers_only():
    for k, test in enumerate(make_folds(ACTORS, "5")):
        train = [a for a in ACTORS if a not in test]
        val = pick_val(train, 2, k)
        assert len(set(val)) == 2 and not set(val) & set(test)
    assert pick_val(ACTORS[:6], 2, 0) != pick_val(ACTORS[:6], 2, 1)  # folds rotate their validation voices
    assert pick_val(["a", "b"], 0, 0) == []
    with pytest.raises(DataError):
        pick_val(["a", "b"], 2, 0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("synth_cv")
    synth_corpus(str(root), n_speakers=6, per_class=3, labels=("neutral", "happy", "sad", "angry"), seed=0)
    return str(root)


def tiny_cfg(corpus, out, cache) -> TrainConfig:
    return TrainConfig.from_flat(data="manifest", root=corpus, out_dir=str(out), cache_dir=str(cache),
                                 arch="conv_lstm", hidden=8, num_layers=1, conv_channels=4, conv_layers=1,
                                 n_mfcc=13, n_chroma=4, deltas=1, gain_norm_db=-25.0, epochs=2, batch_size=8,
                                 progress=False, mixup=0.4, spec_augment=1)


def test_cv_end_to_end_resumes_and_summarises(corpus, tmp_path):
    out, cache = tmp_path / "cv", tmp_path / "cache"
    cfg = tiny_cfg(corpus, out, cache)
    summary = run_cv(cfg, CVOptions(folds="3", val_per_fold=1))
    d = json.loads((out / "cv.json").read_text())
    assert [f["test_speakers"] for f in d["folds"]] == [["synth01", "synth04"], ["synth02", "synth05"],
                                                        ["synth03", "synth06"]]
    for f in d["folds"]:
        assert not set(f["val_speakers"]) & set(f["test_speakers"])
        assert 0.0 <= f["metrics"]["uar"] <= 1.0
    uars = [f["metrics"]["uar"] for f in d["folds"]]
    assert d["uar_mean"] == pytest.approx(np.mean(uars)) and d["uar_std"] == pytest.approx(np.std(uars))
    assert d["pooled"]["n"] == sum(f["metrics"]["n"] for f in d["folds"]) == 6 * 4 * 3
    assert d["recipe"]["config"]["model"]["arch"] == "conv_lstm" and "command" in d
    assert (out / "cv_confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "mean UAR" in summary.table()

    # A killed CV: one fold unfinished. The rerun keeps the finished folds and redoes only it.
    kept = (out / "r1_f1" / "best.pt").stat().st_mtime_ns
    os.remove(out / "r1_f3" / "fold.json")
    os.remove(out / "cv.json")
    again = run_cv(cfg, CVOptions(folds="3", val_per_fold=1))
    assert (out / "r1_f1" / "best.pt").stat().st_mtime_ns == kept
    assert [f.metrics["uar"] for f in again.folds] == pytest.approx(uars)  # deterministic per seed

    # The same --out with other settings is refused, not silently mixed.
    with pytest.raises(TrainError, match="different cross-validation"):
        run_cv(cfg.replace(epochs=3), CVOptions(folds="3", val_per_fold=1))


@pytest.mark.slow
def test_cv_int8_scores_every_fold(corpus, tmp_path):
    cfg = tiny_cfg(corpus, tmp_path / "cv", tmp_path / "cache").replace(select="last")
    plain = run_cv(cfg, CVOptions(folds="2", val_per_fold=0))
    assert all(f.int8 is None for f in plain.folds)
    # asked for afterwards: the finished folds' models are scored, nothing is retrained
    summary = run_cv(cfg, CVOptions(folds="2", val_per_fold=0, int8=True))
    d = summary.to_dict()
    assert [f["metrics"] for f in d["folds"]] == [f.metrics for f in plain.folds]
    assert len(d["folds"]) == 2 and all(f["int8"]["n"] == f["metrics"]["n"] for f in d["folds"])
    assert abs(d["int8"]["uar_mean"] - d["uar_mean"]) <= 0.25  # tiny models; the real gate is in cv.json


def test_cv_with_speaker_norm_reports_adapted_and_unadapted(corpus, tmp_path):
    cfg = tiny_cfg(corpus, tmp_path / "cv", tmp_path / "cache").replace(speaker_norm=True)
    summary = run_cv(cfg, CVOptions(folds="2", val_per_fold=1))
    d = summary.to_dict()
    for f in d["folds"]:
        assert f["adapted"] is not None and f["adapted"]["n"] == f["metrics"]["n"]
    assert "adapted" in d and "speaker-adapted" in summary.table()


@pytest.fixture(scope="module")
def speaker_norm_model(tmp_path_factory):
    """An untrained lstm exported to npz with a speaker_norm feature config."""
    torch = pytest.importorskip("torch")
    from ser_edge.checkpoint import Checkpoint, save_checkpoint
    from ser_edge.export import export_all
    from ser_edge.models import ModelConfig, build_model
    from ser_edge.runtime.features import FeatureConfig

    torch.manual_seed(0)
    fcfg = FeatureConfig(n_mfcc=13, n_mels=40, gain_norm_db=-25.0, speaker_norm=True)
    fcfg = fcfg.with_stats(np.linspace(-200, 5, 13), np.linspace(40, 3, 13))
    mcfg = ModelConfig(arch="lstm", n_features=13, n_classes=4, hidden_size=8, num_layers=1, dropout=0.0)
    d = tmp_path_factory.mktemp("spk")
    save_checkpoint(str(d / "m.pt"), Checkpoint(mcfg, fcfg, ["neutral", "happy", "sad", "angry"],
                                                build_model(mcfg).state_dict(), {}))
    export_all(str(d / "m.pt"), str(d / "out"), formats=("numpy",), gate=False)
    return d / "out" / "model.npz"


def test_recognizer_adapts_to_a_speaker_from_unlabelled_audio(speaker_norm_model, corpus):
    from ser_edge.runtime.errors import SerEdgeError
    from ser_edge.runtime.features import RunningStats, normalise, raw_features
    from ser_edge.runtime.recognizer import Recognizer

    rec = Recognizer.load(speaker_norm_model)
    clips = sorted(str(p) for p in Path(corpus).glob("synth01/*.wav"))
    y = rec.load_waveform(clips[0])
    before = rec.features(y)
    rec.adapt(clips)
    stats = RunningStats()
    for c in clips:
        stats.update(raw_features(rec.load_waveform(c), rec.feature_config))
    np.testing.assert_allclose(rec.features(y), normalise(raw_features(y, rec.feature_config), rec.feature_config,
                                                          stats.result()), rtol=1e-6)
    assert not np.allclose(rec.features(y), before)
    rec.reset_adaptation()
    np.testing.assert_array_equal(rec.features(y), before)
    with pytest.raises(SerEdgeError, match="at least"):
        rec.adapt([y[:8000]])  # 0.5 s: statistics of the sentence, not of the speaker


def test_adapting_a_model_not_trained_for_it_is_refused(exported_models, corpus):
    from ser_edge.runtime.errors import SerEdgeError
    from ser_edge.runtime.recognizer import Recognizer

    rec = Recognizer.load(exported_models("lstm") / "model.npz")
    with pytest.raises(SerEdgeError, match="speaker_norm"):
        rec.adapt(sorted(str(p) for p in Path(corpus).glob("synth01/*.wav")))
