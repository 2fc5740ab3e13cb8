"""Feature schema 2 keeps every model exported before it working, unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ser_edge.runtime.features import FeatureConfig, FeatureConfigError, extract, mfcc, normalise, raw_features

#: The int8 ONNX model ser-edge shipped before feature schema 2 (attn_bilstm, 40 MFCC, schema 1),
#: byte for byte; it embeds a self-test waveform and the logits PyTorch gave for it at export.
OLD_MODEL = Path(__file__).parent / "data" / "schema1-attn_bilstm.int8.onnx"


def test_schema1_model_loads_and_reproduces_its_export_time_logits():
    pytest.importorskip("onnxruntime")
    from ser_edge.runtime.recognizer import Recognizer
    from ser_edge.runtime.selftest import run_selftest

    rec = Recognizer.load(OLD_MODEL)
    cfg = rec.feature_config
    assert cfg.schema_version == 1 and cfg.n_features == cfg.n_mfcc == 40 and cfg.gain_norm_db is None
    result = run_selftest(rec)
    assert result.passed, result


def test_schema1_json_round_trips_without_schema2_fields():
    cfg = FeatureConfig(schema_version=1).with_stats([0.0] * 40, [1.0] * 40)
    d = json.loads(cfg.to_json())
    assert d["schema_version"] == 1 and "n_chroma" not in d and "gain_norm_db" not in d
    assert FeatureConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(FeatureConfigError, match="schema-1"):
        FeatureConfig(schema_version=1, n_chroma=12)


def test_schema1_features_are_the_plain_mfcc(speechlike):
    cfg = FeatureConfig(schema_version=1).with_stats(np.linspace(-300, 5, 40), np.linspace(60, 3, 40))
    np.testing.assert_array_equal(extract(speechlike, cfg), normalise(mfcc(speechlike, cfg), cfg))


def test_gain_normalisation_removes_the_recording_level(speechlike):
    cfg = FeatureConfig(n_chroma=12, deltas=2, gain_norm_db=-25.0)
    loud, quiet = raw_features(speechlike, cfg), raw_features(speechlike * 0.01, cfg)  # -40 dB
    assert raw_features(speechlike, cfg).shape == (len(loud), cfg.n_features)
    np.testing.assert_allclose(quiet, loud, rtol=0, atol=1e-3 * np.abs(loud).max())
    plain = FeatureConfig()
    assert np.abs(raw_features(speechlike * 0.01, plain)[:, 0] - raw_features(speechlike, plain)[:, 0]).min() > 50
