"""WAV reading, resampling and the numpy MFCC give the x86 results on aarch64."""

from __future__ import annotations

import numpy as np
import pytest

from ser_edge.runtime.audio import load_audio, read_wav
from ser_edge.runtime.features import FeatureConfig, extract, mfcc

MFCC_RTOL = 1e-4  # max |diff| / max |ref|: the project's MFCC contract (tests/test_features.py)


@pytest.fixture(scope="module")
def cfg(reference) -> FeatureConfig:
    return FeatureConfig.from_json(reference["feature_config"])


def clip_params(reference):
    return [(c["name"], c["wav"]) for c in reference["clips"]]


def test_reference_has_clips(reference):
    assert len(reference["clips"]) >= 2
    assert any(c["sample_rate"] != 16000 for c in reference["clips"]), "no clip exercises resampling"


def test_read_wav_is_bit_exact(reference, ref_arrays, arm_dir):
    for clip in reference["clips"]:
        y, sr = read_wav(str(arm_dir / clip["wav"]))
        assert sr == clip["sample_rate"]
        assert y.dtype == np.float32
        np.testing.assert_array_equal(y, ref_arrays["wave/" + clip["name"]])


def test_load_audio_resamples_like_x86(reference, ref_arrays, arm_dir, cfg):
    for clip in reference["clips"]:
        y = load_audio(str(arm_dir / clip["wav"]), cfg.sample_rate)
        ref = ref_arrays["audio/" + clip["name"]]
        assert y.shape == ref.shape
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-6)


def test_mfcc_matches_x86(reference, ref_arrays, cfg):
    for clip in reference["clips"]:
        y = ref_arrays["audio/" + clip["name"]]  # identical input on both sides
        m = mfcc(y, cfg)
        ref = ref_arrays["mfcc/" + clip["name"]]
        assert m.shape == ref.shape and m.dtype == np.float32
        err = float(np.max(np.abs(m.astype(np.float64) - ref)) / np.max(np.abs(ref)))
        assert err <= MFCC_RTOL, f"{clip['name']}: relative MFCC error {err:.2e}"
        # Same float64 pipeline on both machines: every coefficient, small ones included, agrees
        # to a few float32 ulps (measured: bit-exact or ~1e-14), not just relative to the largest.
        np.testing.assert_allclose(m, ref, rtol=1e-5, atol=1e-4, err_msg=clip["name"])
        # normalisation with the training stats is elementwise: same tolerance downstream
        z = extract(y, cfg)
        assert np.all(np.isfinite(z))
