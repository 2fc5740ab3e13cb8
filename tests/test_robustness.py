"""The recording chains of ser_edge.robustness (what other corpora differ in) do what their names
say, and condition_report scores a model through them."""

from __future__ import annotations

import numpy as np
import pytest

from ser_edge.robustness import CONDITIONS, condition_report, label_spread
from ser_edge.runtime.recognizer import Recognizer, default_model_path

SR = 16000


def tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(SR * seconds)) / SR)).astype(np.float32)


def gain_db(chain: str, hz: float) -> float:
    y = tone(hz)
    z = CONDITIONS[chain](y, SR)
    mid = slice(SR // 4, 3 * SR // 4)  # away from the edges
    return float(10 * np.log10(np.mean(z[mid].astype(np.float64) ** 2) / np.mean(y[mid].astype(np.float64) ** 2)))


def test_filters_have_the_responses_their_names_say():
    phone = "telephone band (300-3400 Hz)"
    assert abs(gain_db(phone, 1000)) < 0.5
    butterworth = -10 * np.log10(1 + (6000 / 3400) ** 8)  # order 4 at 3.4 kHz: -19.8 dB at 6 kHz
    assert gain_db(phone, 6000) == pytest.approx(butterworth, abs=0.3) and gain_db(phone, 100) < -15
    assert abs(gain_db("low-pass 4 kHz", 1000)) < 0.1 and gain_db("low-pass 4 kHz", 7000) < -15
    assert gain_db("bright mic (+8 dB above 2 kHz)", 7000) == pytest.approx(7.3, abs=0.5)
    assert gain_db("dull mic (-8 dB above 2 kHz)", 7000) == pytest.approx(-7.3, abs=0.5)
    assert abs(gain_db("dull mic (-8 dB above 2 kHz)", 200)) < 0.2


def test_noise_and_reverb_are_deterministic_and_keep_length():
    y = tone(440, 2.0)
    for name in ("white noise, 20 dB SNR", "room reverb (RT60 0.4 s)"):
        z = CONDITIONS[name](y, SR)
        assert z.shape == y.shape and z.dtype == np.float32
        np.testing.assert_array_equal(z, CONDITIONS[name](y, SR))
    noisy = CONDITIONS["white noise, 20 dB SNR"](y, SR)
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean((noisy - y).astype(np.float64) ** 2))
    assert snr == pytest.approx(20.0, abs=0.1)  # float32 rounding of a 0.3-peak tone
    wet = CONDITIONS["room reverb (RT60 0.4 s)"](tone(440, 0.5), SR)
    assert np.max(np.abs(wet)) == pytest.approx(0.3, rel=1e-3)  # peak kept


def test_label_spread_flags_a_collapse():
    assert label_spread(["a"] * 9 + ["b"], ["a", "b", "c"])["max_share"] == 0.9
    assert label_spread(["a", "b", "c"], ["a", "b", "c"])["classes_predicted"] == 3


def test_condition_report_scores_every_chain(tmp_path):
    rec = Recognizer.load(default_model_path())
    rng = np.random.default_rng(0)
    paths, truth = [], []
    from ser_edge.runtime.audio import write_wav

    for i in range(4):
        t = np.arange(SR * 2) / SR
        y = 0.2 * np.sin(2 * np.pi * (150 + 40 * i) * t) * (1 + 0.5 * rng.standard_normal(SR * 2))
        path = tmp_path / f"{i}.wav"
        write_wav(str(path), y.astype(np.float32), SR)
        paths.append(str(path))
        truth.append(rec.labels[i])
    report = condition_report(rec, paths, truth)
    assert report["n"] == 4 and set(report["conditions"]) == set(CONDITIONS)
    for r in report["conditions"].values():
        assert 0.0 <= r["uar"] <= 1.0 and 0.0 <= r["agreement"] <= 1.0 and abs(sum(r["shares"].values()) - 1) < 1e-9
