"""Training configuration declared once: dataclass <-> recipes <-> CLI options, and validation."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from ser_edge.config import (
    TrainConfig,
    TrainError,
    build_config,
    describe,
    load_recipe,
    merge,
    recipe_names,
)


def test_default_recipe_is_the_dataclass_defaults():
    """`ser-edge train` with no --config and the documented default recipe cannot drift apart."""
    assert "default" in recipe_names()
    assert build_config("default") == TrainConfig()


@pytest.mark.parametrize("name", recipe_names())
def test_every_shipped_recipe_is_valid(name):
    cfg = build_config(name, root="somewhere")
    assert cfg.problems() == []
    assert cfg.feature_config().n_features == cfg.model_config(cfg.features.n_features, 8).n_features


def test_recipe_round_trips_through_describe(tmp_path):
    cfg = build_config("reslstm-sa", epochs=7, hidden=32, n_chroma=6)
    path = tmp_path / "r.toml"
    path.write_text(describe(cfg))
    again = merge(TrainConfig(), load_recipe(str(path)))
    assert again == cfg
    assert again.epochs == 7 and again.model.hidden_size == 32 and again.features.n_chroma == 6
    assert again.model.arch == "res_lstm_att"  # from the recipe, not the defaults


def test_flags_override_recipe_override_defaults():
    cfg = build_config("reslstm-sa", lr=0.01)
    assert cfg.lr == 0.01 and cfg.epochs == 100 and cfg.features.n_mfcc == 34
    assert build_config(None, lr=None).lr == TrainConfig().lr  # None = not given


@pytest.mark.parametrize("text, match", [
    ("[train]\nepoch = 3\n", "unknown"),
    ("[features]\nn_fft = 300\nwin_length = 400\n", "win_length <= n_fft"),
    ("[model]\narch = 'gru'\n", "architecture"),
    ("[oops]\nx = 1\n", "unknown tables"),
    ("[train\n", "cannot read"),
])
def test_bad_recipes_are_one_clear_error(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TrainError, match=match):
        build_config(str(path))


def test_unknown_recipe_name_lists_the_shipped_ones():
    with pytest.raises(TrainError, match="reslstm-sa"):
        build_config("no-such-recipe")


@pytest.mark.parametrize("kw, match", [
    (dict(lr=float("nan")), "lr must be finite"),
    (dict(lr=float("inf")), "lr must be finite"),
    (dict(lr=0.0), "lr must be >"),
    (dict(seed=-1), "seed must be >= 0"),
    (dict(epochs=0), "epochs must be >= 1"),
    (dict(batch_size=10 ** 9), "batch_size must be <="),
    (dict(gain_db=(20.0, -20.0)), "gain_db"),
    (dict(noise_snr_db=(float("nan"), 1.0)), "noise_snr_db"),
    (dict(threads=2000), "threads must be <="),
    (dict(resume=True, overwrite=True), "contradict"),
])
def test_validation_names_the_problem(kw, match):
    with pytest.raises(TrainError, match=match):
        TrainConfig.from_flat(root="x", **kw).validate()


def test_model_and_feature_problems_are_train_errors():
    with pytest.raises(TrainError, match="hidden_size"):
        TrainConfig.from_flat(root="x", hidden=100000)
    with pytest.raises(TrainError, match="deltas"):
        TrainConfig.from_flat(root="x", deltas=3)


def test_every_setting_has_a_flag_in_train_help():
    from ser_edge.cli.config_options import config_parameters

    names = {p.name for p in config_parameters()}
    hidden = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli") == ()}
    assert {f.name for f in dataclasses.fields(TrainConfig)} - hidden <= names
    assert {"n_fft", "hop_length", "n_chroma", "deltas", "gain_norm_db", "arch", "hidden_size"} <= names


@pytest.mark.parametrize("args", [
    ["--lr", "nan"], ["--lr", "inf"], ["--hidden", "100000"], ["--seed", "-1"], ["--arch", "gru"],
    ["--gain-db", "a,b"], ["--config", "nope"], ["--n-fft", "3"],
])
def test_bad_train_flags_are_one_line_errors(tmp_path, args):
    proc = subprocess.run([sys.executable, "-m", "ser_edge", "train", "--data", "manifest", "--root",
                           str(tmp_path), "--out", str(tmp_path / "o"), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "best.pt").exists()


def test_print_config_shows_the_resolved_recipe():
    proc = subprocess.run([sys.executable, "-m", "ser_edge", "train", "--config", "reslstm-sa", "--epochs", "5",
                           "--print-config"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'arch = "res_lstm_att"' in proc.stdout and "epochs = 5" in proc.stdout


@pytest.mark.parametrize("name", [n for n in recipe_names() if n != "default"])
def test_baseline_recipes_list_every_setting(name):
    """A baseline recipe must not move when ser-edge's defaults (the shipped recipe) change: it
    names every feature, model and training setting itself."""
    from ser_edge.config import FEATURE_KEYS, INFRA_KEYS, MODEL_KEYS

    recipe = load_recipe(name)
    assert set(recipe["features"]) >= set(FEATURE_KEYS)
    assert set(recipe["model"]) >= set(MODEL_KEYS)
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)} - set(INFRA_KEYS) - {"features", "model"}
    assert set(recipe) - {"features", "model"} >= train_keys


def test_none_switches_an_optional_feature_off_and_round_trips(tmp_path):
    cfg = build_config("reslstm-sa")
    assert cfg.features.gain_norm_db is None and cfg.features.top_db == 80.0
    assert build_config("default", gain_norm_db="none").features.gain_norm_db is None
    path = tmp_path / "r.toml"
    path.write_text(describe(build_config("default", gain_norm_db="none", top_db="none")))
    again = merge(TrainConfig(), load_recipe(str(path)))
    assert again.features.gain_norm_db is None and again.features.top_db is None
