"""Streaming on aarch64 (issue 10): every stream mode gives the x86 logits, the stateful step
equals the whole sequence, incremental features equal the window's, WAV chunks equal the whole
file resampled, and the speech gate measures what it measured on x86.

``stream_cases`` in reference.json: each ONNX / numpy model with the modes it streams in
(``stateful`` for the unidirectional LSTM: the numpy backend and the ``*.stream.onnx`` graphs).
"""

from __future__ import annotations

import numpy as np
import pytest

from ser_edge.runtime.audio import load_audio
from ser_edge.runtime.features import FeatureConfig, extract
from ser_edge.runtime.frontend import FrameCache, window_features
from ser_edge.runtime.recognizer import Recognizer
from ser_edge.runtime.sources import wav_chunks
from ser_edge.runtime.vad import gate_measures

WINDOW_S, HOP_S = 1.0, 0.5  # as scripts/arm/make_reference.py streams
FP32_ATOL, INT8_ATOL = 1e-3, 2e-2  # a recurrence over many frames: a little more than one clip's


def stream_cases(reference):
    return [(c, m) for c in reference.get("stream_cases", []) for m in c["modes"]]


def test_reference_streams_every_mode(reference):
    cases = reference.get("stream_cases")
    assert cases, "reference made without stream cases (scripts/arm/make_reference.py too old?)"
    modes = {m for c in cases for m in c["modes"]}
    assert modes == {"window", "incremental", "stateful"}
    assert {c["backend"] for c in cases if "stateful" in c["modes"]} == {"numpy", "onnxruntime"}


@pytest.fixture(scope="module")
def clips_audio(reference, arm_dir):
    return np.concatenate([load_audio(str(arm_dir / c["wav"]), 16000) for c in reference["clips"]])


def test_streams_match_x86(reference, ref_arrays, arm_dir, clips_audio):
    for case, mode in stream_cases(reference):
        rec = Recognizer.load(str(arm_dir / case["model"]), backend=case["backend"], threads=1)
        stream = rec.stream(window_s=WINDOW_S, hop_s=HOP_S, smoothing="none", mode=mode)
        assert stream.mode == mode
        got = np.stack([p.logits for p in stream.push(clips_audio) + stream.flush()])
        ref = ref_arrays[f"stream/{case['id']}/{mode}"]
        assert got.shape == ref.shape, f"{case['id']} {mode}"
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        ok = ~np.isnan(ref[:, 0])
        atol = FP32_ATOL if case["quantization"] == "none" else INT8_ATOL
        diff = float(np.abs(got[ok] - ref[ok]).max())
        assert diff <= atol, f"{case['id']} {mode}: max |logit - x86| = {diff:.2e} > {atol}"
        assert (got[ok].argmax(1) == ref[ok].argmax(1)).all(), f"{case['id']} {mode}: top-1 differs from x86"


def test_stateful_step_equals_the_whole_sequence(reference, arm_dir):
    for case in reference.get("stream_cases", []):
        if "stateful" not in case["modes"]:
            continue
        rec = Recognizer.load(str(arm_dir / case["model"]), backend=case["backend"], threads=1)
        stepper = rec.backend.stepper()
        x = np.random.default_rng(0).standard_normal((2, 60, stepper.n_features)).astype(np.float32)
        full = rec.logits(x, np.array([60, 60]))
        state = stepper.zero_state(2)
        _, state = stepper.step(x[:, :25], state)
        logits, _ = stepper.step(x[:, 25:], state)
        # int8 re-quantises each call's activations with that call's own range: 2 % of the logit scale
        atol = 1e-5 if case["quantization"] == "none" else 0.02 * float(np.abs(full).max())
        np.testing.assert_allclose(logits, full, rtol=0, atol=atol, err_msg=case["id"])


def test_incremental_features_equal_window_features(reference, clips_audio):
    cfg = FeatureConfig.from_json(reference["feature_config"])
    window, hop = 16000, 8000
    cache = FrameCache(cfg, cfg.n_frames(window) + 8)
    for start in range(0, len(clips_audio) - window + 1, hop):
        cache.push(clips_audio[cache.total:start + window])
        cache.update()
        seg = clips_audio[start:start + window]
        want = extract(seg, cfg)
        np.testing.assert_allclose(window_features(cache, seg, start, cfg), want, rtol=1e-5,
                                   atol=1e-5 * np.abs(want).max())


def test_wav_chunks_equal_the_whole_file(reference, arm_dir):
    for clip in reference["clips"]:
        path = str(arm_dir / clip["wav"])
        chunks = np.concatenate(list(wav_chunks(path, 16000, chunk_s=0.1)))
        np.testing.assert_allclose(chunks, load_audio(path, 16000), rtol=0, atol=1e-5)


def test_gate_measures_match_x86(reference, ref_arrays, arm_dir):
    for clip in reference["clips"]:
        m = gate_measures(load_audio(str(arm_dir / clip["wav"]), 16000), 16000)
        got = np.array([m["level_db"], m["dynamic_db"], m["zcr"]])
        np.testing.assert_allclose(got, ref_arrays["gate/" + clip["name"]], rtol=0, atol=1e-3)
