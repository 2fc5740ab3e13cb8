"""Streaming recognition: windows, hops, smoothing, arbitrary chunking, bounded memory, sources."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from ser_edge.runtime import Recognizer, SerEdgeError
from ser_edge.runtime.audio import write_wav
from ser_edge.runtime.recognizer import softmax
from ser_edge.runtime.sources import MIC_INSTALL_HINT, mic_chunks, wav_chunks
from ser_edge.runtime.stream import Smoother

SR = 16000


@pytest.fixture(scope="module")
def rec(exported_models):
    """A small exported LSTM on the pure-numpy backend (fast, no engine)."""
    return Recognizer.load(exported_models("lstm") / "model.npz")


@pytest.fixture(scope="module")
def audio(speechlike):
    """4.3 s: the speech-like clip three times, slightly different gains. ``(68800,) float32``."""
    y = np.concatenate([speechlike, 0.5 * speechlike, speechlike[:20800]])
    return y.astype(np.float32)


def push_in_chunks(stream, y, sizes):
    preds, i, k = [], 0, 0
    while i < len(y):
        n = sizes[k % len(sizes)]
        preds += stream.push(y[i:i + n])
        i, k = i + n, k + 1
    return preds


def test_each_hop_classifies_the_latest_window(rec, audio):
    stream = rec.stream(window_s=1.0, hop_s=0.5, smoothing="none", mode="window")
    preds = stream.push(audio)
    window, hop = SR, SR // 2
    assert len(preds) == 1 + (len(audio) - window) // hop
    for k, p in enumerate(preds):
        seg = audio[k * hop:k * hop + window]
        feats = rec.features(seg)
        expected = rec.logits(feats[None], np.array([len(feats)]))[0]
        np.testing.assert_array_equal(p.logits, expected)
        assert (p.start_s, p.end_s) == (k * 0.5, k * 0.5 + 1.0)
        assert p.label == rec.labels[int(np.argmax(expected))]
    # the tail after the last hop is classified by flush(), once
    tail = stream.flush()
    assert len(tail) == 1 and tail[0].end_s == pytest.approx(len(audio) / SR)
    np.testing.assert_array_equal(tail[0].logits, rec.predict(audio[-window:]).logits)
    assert stream.flush() == []


@pytest.mark.parametrize("mode", ["window", "incremental", "stateful"])
@pytest.mark.parametrize("sizes", [[1], [7, 160, 3333], [SR // 2], [40000]])
def test_chunking_does_not_change_predictions(rec, audio, sizes, mode):
    whole = rec.stream(window_s=1.0, hop_s=0.25, smoothing="ema", mode=mode).push(audio)
    if sizes == [1]:
        audio = audio[:SR + SR // 4 + 5]  # sample-by-sample is slow in Python; two hops suffice
        whole = whole[:2]
    chunked = push_in_chunks(rec.stream(window_s=1.0, hop_s=0.25, smoothing="ema", mode=mode), audio, sizes)
    assert len(chunked) == len(whole)
    for a, b in zip(chunked, whole):
        np.testing.assert_array_equal(a.logits, b.logits)
        assert a.probabilities == b.probabilities and a.start_s == b.start_s


def test_ema_and_mean_smoothing(rec, audio):
    raw = rec.stream(window_s=1.0, hop_s=0.5, smoothing="none").push(audio)
    probs = [softmax(p.logits) for p in raw]
    ema = rec.stream(window_s=1.0, hop_s=0.5, smoothing="ema", alpha=0.3).push(audio)
    state = probs[0]
    for p, out in zip(probs, ema):
        state = p if out is ema[0] else 0.3 * p + 0.7 * state
        np.testing.assert_allclose(list(out.probabilities.values()), state, rtol=1e-12)
        assert out.label == rec.labels[int(np.argmax(state))]
    mean = rec.stream(window_s=1.0, hop_s=0.5, smoothing="mean", history=3).push(audio)
    for k, out in enumerate(mean):
        expected = np.mean(probs[max(0, k - 2):k + 1], axis=0)
        np.testing.assert_allclose(list(out.probabilities.values()), expected, rtol=1e-12)


def test_short_stream_is_classified_on_flush(rec, speechlike):
    stream = rec.stream(window_s=2.0, hop_s=0.5, mode="window")
    assert stream.push(speechlike[:12000]) == []  # less than a window: nothing yet
    (pred,) = stream.flush()
    np.testing.assert_array_equal(pred.logits, rec.predict(speechlike[:12000]).logits)
    tiny = rec.stream(window_s=2.0, hop_s=0.5)
    tiny.push(speechlike[:100])
    assert tiny.flush() == []  # below the minimum duration: nothing to classify


def test_silent_windows_carry_probabilities_over(rec, speechlike):
    y = np.concatenate([speechlike[:SR], np.zeros(2 * SR, np.float32)])
    preds = rec.stream(window_s=1.0, hop_s=0.5, smoothing="ema").push(y)
    assert not preds[0].silent and all(p.silent for p in preds[2:])
    for p in preds[2:]:
        assert p.probabilities == preds[1].probabilities
        assert p.to_dict()["logits"] is None
    only_silence = rec.stream(window_s=1.0, hop_s=0.5).push(np.zeros(SR, np.float32))
    assert only_silence[0].silent
    assert set(only_silence[0].probabilities.values()) == {1.0 / len(rec.labels)}


def test_int16_chunks_equal_float_chunks(rec, speechlike):
    pcm = (speechlike * 32767).astype(np.int16)
    a = rec.stream(window_s=1.0, hop_s=0.5).push(pcm)
    b = rec.stream(window_s=1.0, hop_s=0.5).push(pcm.astype(np.float32) / 32768)
    assert [p.probabilities for p in a] == [p.probabilities for p in b]


@pytest.mark.parametrize("mode", ["window", "incremental", "stateful"])
def test_memory_stays_bounded_over_a_long_stream(rec, speechlike, mode):
    stream = rec.stream(window_s=0.5, hop_s=0.5, smoothing="mean", history=4, mode=mode)
    ring, nbytes = stream._ring, stream.buffer_nbytes
    assert ring.nbytes == SR // 2 * 4 and (nbytes == ring.nbytes) == (mode == "window")
    rng = np.random.default_rng(0)
    n_preds = 0
    for _ in range(40):  # 40 x 1.5 s = 60 s of audio, in ragged chunks
        n_preds += len(push_in_chunks(stream, speechlike, list(rng.integers(100, 9000, size=5))))
        assert stream._ring is ring and stream.buffer_nbytes == nbytes
        assert len(stream.smoother.recent) <= 4
        if stream._cache is not None:  # audio awaiting its frames: under a hop plus one FFT span
            assert len(stream._cache._audio) <= stream.hop + 2 * rec.feature_config.n_fft
    assert stream.total == 40 * len(speechlike)
    assert n_preds == stream.total // (SR // 2)


def test_invalid_stream_parameters(rec):
    with pytest.raises(ValueError, match="hop"):
        rec.stream(window_s=1.0, hop_s=2.0)
    with pytest.raises(ValueError, match="window"):
        rec.stream(window_s=0.01, hop_s=0.01)
    with pytest.raises(ValueError, match="smoothing"):
        Smoother("median")
    with pytest.raises(ValueError, match="alpha"):
        Smoother("ema", alpha=0.0)


# -- sources --------------------------------------------------------------------------------------

def test_wav_chunks_cover_the_file_resampled(tmp_path, speechlike):
    path = tmp_path / "a.wav"
    write_wav(path, speechlike, 8000)  # declared 8 kHz: chunks come back at 16 kHz
    chunks = list(wav_chunks(str(path), SR, chunk_s=0.1))
    assert all(len(c) == 1600 for c in chunks[:-1])
    assert sum(len(c) for c in chunks) == 2 * len(speechlike)


def test_wav_chunks_realtime_paces_by_chunk(tmp_path, speechlike, monkeypatch):
    import ser_edge.runtime.sources as sources

    write_wav(tmp_path / "a.wav", speechlike[:8000], SR)
    slept = []
    monkeypatch.setattr(sources.time, "monotonic", lambda: 100.0)  # a clock that never advances
    monkeypatch.setattr(sources.time, "sleep", slept.append)
    chunks = list(wav_chunks(str(tmp_path / "a.wav"), SR, chunk_s=0.1, realtime=True))
    assert len(chunks) == 5
    assert slept == pytest.approx([0.1, 0.2, 0.3, 0.4])  # chunk k is due k * 0.1 s after the start


def test_mic_without_sounddevice_is_a_clean_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # makes the import raise ImportError
    with pytest.raises(SerEdgeError, match=r"ser-edge\[mic\]") as e:
        next(mic_chunks(SR))
    assert str(e.value) == MIC_INSTALL_HINT


def test_mic_chunks_with_a_fake_device(monkeypatch):
    opened = {}

    class FakeInputStream:
        def __init__(self, samplerate, channels, dtype, blocksize, device, callback):
            opened.update(samplerate=samplerate, channels=channels, blocksize=blocksize)
            self.callback = callback

        def __enter__(self):
            for k in range(3):  # the device delivers three blocks of (blocksize, 1)
                self.callback(np.full((opened["blocksize"], 1), k, np.float32), opened["blocksize"], None, None)
            return self

        def __exit__(self, *exc):
            opened["closed"] = True

    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(InputStream=FakeInputStream))
    chunks = list(mic_chunks(SR, chunk_s=0.05, max_chunks=3))
    assert opened["samplerate"] == SR and opened["channels"] == 1 and opened["closed"]
    assert [c.shape for c in chunks] == [(800,)] * 3
    assert [float(c[0]) for c in chunks] == [0.0, 1.0, 2.0]
