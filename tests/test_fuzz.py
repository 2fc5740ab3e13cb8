"""Robustness fuzzing (hypothesis) of every boundary that reads untrusted input.

Contract checked everywhere: bad input raises the documented :class:`SerEdgeError` subclass
(``AudioError``, ``FeatureConfigError``, ``MetadataError``, ``CheckpointError``, ...), never an
engine or numpy traceback; good input gives output with the documented shape, dtype and range.

Targets: ``read_wav`` (arbitrary bytes, structurally valid RIFF/WAVE with fuzzed fields, every
truncation point), ``resample``, ``mfcc``/``extract`` (arbitrary finite audio, fuzzed feature
configurations), ``FeatureConfig.from_json``, ``ModelMetadata.from_props``, the model loaders
(``load_backend`` / ``Recognizer.load`` on random bytes, truncated or corrupted ONNX and npz
exports) and ``load_checkpoint``.

Deterministic in CI (``derandomize=True``, small example counts, well under a minute). For an
exploratory run with fresh random examples, scale the counts::

    SER_EDGE_FUZZ_SCALE=100 .venv/bin/pytest -q tests/test_fuzz.py --hypothesis-show-statistics
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import struct
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ser_edge.runtime.audio import AudioError, read_wav, resample
from ser_edge.runtime.errors import SerEdgeError
from ser_edge.runtime.features import FeatureConfig, FeatureConfigError, extract, mfcc
from ser_edge.runtime.metadata import PREFIX, MetadataError, ModelMetadata

#: Multiplies every example count; > 1 also switches to fresh random examples (exploration).
SCALE = float(os.environ.get("SER_EDGE_FUZZ_SCALE", "1"))


def fuzz(n: int) -> settings:
    """``n`` examples in CI, ``n * SCALE`` when exploring; no deadline (2 shared CPU cores)."""
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, derandomize=SCALE <= 1,
                    database=None, suppress_health_check=list(HealthCheck))


_counter = itertools.count()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def write_tmp(directory: Path, data: bytes, suffix: str) -> str:
    """A fresh file per example (hypothesis re-runs a test body many times in one fixture scope)."""
    path = directory / f"f{next(_counter)}{suffix}"
    path.write_bytes(data)
    return str(path)


# =======================================================================================
# 1. WAV reading
# =======================================================================================

PCM, FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# KSDATAFORMAT_SUBTYPE_* GUID bytes after the 2-byte format code (00000001-0000-0010-8000-00aa00389b71).
GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")
EPS = 1e-6


def chunk(cid: bytes, body: bytes, size: Optional[int] = None, pad: bool = True) -> bytes:
    """One RIFF chunk; ``size`` overrides the declared size; odd bodies get their pad byte."""
    size = len(body) if size is None else size
    return struct.pack("<4sI", cid, size & 0xFFFFFFFF) + body + (b"\x00" if pad and len(body) % 2 else b"")


def fmt_body(tag: int, channels: int, rate: int, bits: int, block_align: Optional[int] = None,
             sub_tag: Optional[int] = None, guid_tail: bytes = GUID_TAIL) -> bytes:
    """A ``fmt `` chunk body; ``sub_tag`` makes it WAVE_FORMAT_EXTENSIBLE (40 bytes)."""
    align = (channels * bits // 8) if block_align is None else block_align
    head = struct.pack("<HHIIHH", tag & 0xFFFF, channels & 0xFFFF, rate & 0xFFFFFFFF,
                       (rate * align) & 0xFFFFFFFF, align & 0xFFFF, bits & 0xFFFF)
    if sub_tag is None:
        return head
    return head + struct.pack("<HHI", 22, bits & 0xFFFF, 0) + struct.pack("<H", sub_tag & 0xFFFF) + guid_tail


def riff(chunks: bytes, riff_size: Optional[int] = None) -> bytes:
    size = 4 + len(chunks) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", size & 0xFFFFFFFF) + b"WAVE" + chunks


def check_audio(y: np.ndarray, sr: int) -> None:
    """What ``read_wav`` promises whenever it returns."""
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.ndim == 1
    assert y.flags.c_contiguous
    assert len(y) >= 1
    assert np.all(np.isfinite(y))
    assert float(np.max(np.abs(y))) <= 1.0 + EPS, f"sample {float(np.max(np.abs(y)))} outside [-1, 1]"
    assert isinstance(sr, int) and 1000 <= sr <= 384000


def read_or_audio_error(src) -> Optional[Tuple[np.ndarray, int]]:
    """``read_wav``; ``None`` when it raised :class:`AudioError` (anything else propagates)."""
    try:
        y, sr = read_wav(src)
    except AudioError as e:
        assert str(e), "AudioError without a message"
        return None
    check_audio(y, sr)
    return y, sr


# -- encodings with an independent oracle: samples are generated first, then encoded -----

ENCODINGS = {  # name -> (format tag, bits)
    "u8": (PCM, 8), "s16": (PCM, 16), "s24": (PCM, 24), "s32": (PCM, 32), "f32": (FLOAT, 32), "f64": (FLOAT, 64),
}


def encode(kind: str, ints_or_floats: np.ndarray) -> Tuple[bytes, np.ndarray]:
    """``(frames, channels)`` raw sample values -> (little-endian bytes, float64 values in [-1, 1])."""
    v = ints_or_floats
    if kind == "u8":
        return v.astype(np.uint8).tobytes(), (v.astype(np.float64) - 128) / 128
    if kind == "s16":
        return v.astype("<i2").tobytes(), v / 32768.0
    if kind == "s24":
        u = v.astype(np.int64) & 0xFFFFFF
        b = np.stack([u & 0xFF, (u >> 8) & 0xFF, (u >> 16) & 0xFF], axis=-1).astype(np.uint8)
        return b.tobytes(), v / float(1 << 23)
    if kind == "s32":
        return v.astype("<i4").tobytes(), v / 2147483648.0
    if kind == "f32":
        return v.astype("<f4").tobytes(), v.astype(np.float32).astype(np.float64)
    return v.astype("<f8").tobytes(), v.astype(np.float64)


def sample_values(kind: str, rng: np.random.Generator, shape: Tuple[int, int], extreme: bool) -> np.ndarray:
    lo, hi = {"u8": (0, 255), "s16": (-32768, 32767), "s24": (-(1 << 23), (1 << 23) - 1),
              "s32": (-(1 << 31), (1 << 31) - 1)}.get(kind, (None, None))
    if lo is None:  # float: in range, with the extremes
        v = rng.uniform(-1.0, 1.0, shape)
        return np.where(rng.random(shape) < 0.2, rng.choice([-1.0, 1.0, 0.0], shape), v) if extreme else v
    if extreme:
        return rng.choice([lo, hi, 0 if kind != "u8" else 128], shape).astype(np.int64)
    return rng.integers(lo, hi, shape, endpoint=True)


junk_chunk = st.tuples(st.sampled_from([b"LIST", b"fact", b"JUNK", b"bext", b"cue ", b"\x00\x00\x00\x00"]),
                       st.binary(max_size=9))


@st.composite
def clean_wavs(draw):
    """A well-formed WAV and the mono samples it must decode to: ``(bytes, expected (n,), rate)``."""
    kind = draw(st.sampled_from(sorted(ENCODINGS)))
    tag, bits = ENCODINGS[kind]
    channels = draw(st.sampled_from([1, 1, 2, 3, 6, 32]))
    rate = draw(st.sampled_from([1000, 8000, 16000, 22050, 44100, 48000, 384000]) | st.integers(1000, 384000))
    n = draw(st.integers(1, 120))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    raw, values = encode(kind, sample_values(kind, rng, (n, channels), draw(st.booleans())))
    expected = values.mean(axis=1)
    extensible = draw(st.booleans())
    fmt = chunk(b"fmt ", fmt_body(EXTENSIBLE if extensible else tag, channels, rate, bits,
                                  sub_tag=tag if extensible else None))
    if not extensible and draw(st.booleans()):  # cbSize=0 tail, as many writers emit
        fmt = chunk(b"fmt ", fmt_body(tag, channels, rate, bits) + b"\x00\x00")
    before = b"".join(chunk(c, b) for c, b in draw(st.lists(junk_chunk, max_size=2)))
    between = b"".join(chunk(c, b) for c, b in draw(st.lists(junk_chunk, max_size=2)))
    after = b"".join(chunk(c, b) for c, b in draw(st.lists(junk_chunk, max_size=2)))
    # data chunk size: exact, streaming 0xFFFFFFFF (only when nothing follows), or shorter than
    # the bytes present (the rest is then ignored)
    size_mode = draw(st.sampled_from(["exact", "exact", "stream", "short"]))
    declared = len(raw)
    if size_mode == "stream":
        after, declared = b"", 0xFFFFFFFF
    elif size_mode == "short":
        frame = channels * bits // 8
        keep = draw(st.integers(1, n))
        declared = keep * frame + (draw(st.integers(0, frame - 1)) if keep < n else 0)
        expected = expected[:keep]
        after = b""  # the ignored remainder is parsed as chunks; keep the layout simple
    data = chunk(b"data", raw, size=declared, pad=size_mode != "stream")  # a stream never gets padded
    if draw(st.booleans()):
        body = before + fmt + between + data + after
    else:  # 'data' before 'fmt ' is legal RIFF
        assume(size_mode == "exact")  # a size that is not the chunk's length would misplace 'fmt '
        body = before + data + between + fmt + after
    riff_size = draw(st.sampled_from([None, 0, 0xFFFFFFFF]))
    return riff(body, riff_size), expected, rate


@fuzz(300)
@given(clean_wavs())
def test_read_wav_clean_files_decode_exactly(case):
    buf, expected, rate = case
    y, sr = read_wav(io.BytesIO(buf))
    check_audio(y, sr)
    assert sr == rate
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=0, atol=2e-7)


@st.composite
def fuzzed_wavs(draw):
    """RIFF/WAVE files whose every header field, chunk size and order is fuzzed."""
    tag = draw(st.sampled_from([PCM, FLOAT, EXTENSIBLE, 0x0002, 0x0055]) | st.integers(0, 0xFFFF))
    sub_tag = draw(st.sampled_from([PCM, FLOAT]) | st.integers(0, 0xFFFF))
    guid_tail = draw(st.just(GUID_TAIL) | st.binary(min_size=14, max_size=14))
    channels = draw(st.sampled_from([0, 1, 2, 3, 32, 33]) | st.integers(0, 0xFFFF))
    rate = draw(st.sampled_from([0, 999, 1000, 16000, 384000, 384001, 0xFFFFFFFF]) | st.integers(0, 0xFFFFFFFF))
    bits = draw(st.sampled_from([0, 4, 8, 12, 16, 24, 32, 64]) | st.integers(0, 0xFFFF))
    align = draw(st.none() | st.integers(0, 0xFFFF))
    fbody = fmt_body(tag, channels, rate, bits, align, sub_tag if tag == EXTENSIBLE else None, guid_tail)
    if draw(st.booleans()):  # fmt chunk cut short or padded
        fbody = fbody[:draw(st.integers(0, len(fbody)))] + draw(st.binary(max_size=4))
    payload = draw(st.binary(max_size=256))
    sizes = st.sampled_from([0, 1, 2, 3, 15, 16, 17, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF]) | st.integers(0, 0xFFFFFFFF)
    pieces: List[bytes] = []
    for _ in range(draw(st.integers(1, 5))):
        which = draw(st.sampled_from(["fmt", "data", "junk"]))
        body = fbody if which == "fmt" else payload if which == "data" else draw(st.binary(max_size=12))
        cid = {"fmt": b"fmt ", "data": b"data"}.get(which) or draw(st.binary(min_size=4, max_size=4))
        size = draw(st.none() | sizes)
        pieces.append(chunk(cid, body, size, pad=draw(st.booleans())))
    buf = riff(b"".join(pieces), draw(st.none() | sizes))
    if draw(st.booleans()):  # flip a few bytes
        arr = bytearray(buf)
        for _ in range(draw(st.integers(1, 4))):
            arr[draw(st.integers(0, len(arr) - 1))] = draw(st.integers(0, 255))
        buf = bytes(arr)
    if draw(st.booleans()):
        buf = buf[:draw(st.integers(0, len(buf)))]
    return buf


@fuzz(600)
@given(fuzzed_wavs())
@example(riff(chunk(b"fmt ", fmt_body(FLOAT, 1, 16000, 32)) + chunk(b"data", struct.pack("<2f", 5.0, -7.0))))
def test_read_wav_fuzzed_headers_only_raise_audio_error(buf):
    out = read_or_audio_error(io.BytesIO(buf))
    if out is not None:
        # every returned frame came from at least one byte of the file
        assert len(out[0]) <= len(buf)


@fuzz(300)
@given(st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: b"RIFF" + b[:4] + b"WAVE" + b[4:]))
def test_read_wav_arbitrary_bytes(buf):
    out = read_or_audio_error(io.BytesIO(buf))
    if out is not None:
        assert len(out[0]) <= len(buf)


@fuzz(60)
@given(fuzzed_wavs() | clean_wavs().map(lambda c: c[0]))
def test_read_wav_from_files_matches_stream(scratch, buf):
    """A path and a file object give the same answer (both only AudioError on failure)."""
    path = write_tmp(scratch, buf, ".wav")
    from_path, from_stream = read_or_audio_error(path), read_or_audio_error(io.BytesIO(buf))
    assert (from_path is None) == (from_stream is None)
    if from_path is not None:
        np.testing.assert_array_equal(from_path[0], from_stream[0])
        assert from_path[1] == from_stream[1]
    # the message names the file
    if from_path is None:
        with pytest.raises(AudioError, match=os.path.basename(path)):
            read_wav(Path(path))


@pytest.mark.parametrize("kind,channels,extensible", [("s16", 2, False), ("s24", 1, True), ("f64", 3, False),
                                                      ("u8", 1, False)])
def test_read_wav_every_truncation_point(kind, channels, extensible):
    """Cut a file after every byte: an AudioError until the data chunk is complete, then the
    full signal (bytes of a trailing chunk are not audio)."""
    tag, bits = ENCODINGS[kind]
    raw, values = encode(kind, sample_values(kind, np.random.default_rng(1), (7, channels), False))
    head = riff(b"")
    fmt = chunk(b"fmt ", fmt_body(EXTENSIBLE if extensible else tag, channels, 16000, bits,
                                  sub_tag=tag if extensible else None))
    data = chunk(b"data", raw)
    full = riff(chunk(b"LIST", b"INFOabc") + fmt + data + chunk(b"JUNK", b"xyz"))
    end_of_data = len(full) - len(chunk(b"JUNK", b"xyz"))
    assert len(head) == 12
    for cut in range(len(full) + 1):
        out = read_or_audio_error(io.BytesIO(full[:cut]))
        if cut < end_of_data - (len(raw) % 2):  # the pad byte of an odd data chunk is optional
            assert out is None, f"prefix of {cut}/{len(full)} bytes was accepted"
        else:
            assert out is not None, f"complete data chunk refused at cut {cut}"
            np.testing.assert_allclose(out[0], values.mean(axis=1), atol=2e-7)


def test_read_wav_float_samples_outside_unit_range():
    """IEEE-float WAVs may hold samples beyond +-1 (e.g. an unclipped mix); read_wav promises
    [-1, 1], so they must come back clipped (or be refused), never as-is."""
    buf = riff(chunk(b"fmt ", fmt_body(FLOAT, 1, 16000, 32)) + chunk(b"data", struct.pack("<3f", 5.0, -7.0, 0.5)))
    out = read_or_audio_error(io.BytesIO(buf))
    if out is not None:
        np.testing.assert_array_equal(out[0], np.array([1.0, -1.0, 0.5], dtype=np.float32))


def test_read_wav_streaming_zero_size_data_chunk():
    """A writer that never patched its header leaves a 0 data size; the bytes present are the audio."""
    raw, values = encode("s16", np.arange(-50, 50).reshape(-1, 1) * 300)
    buf = riff(chunk(b"fmt ", fmt_body(PCM, 1, 16000, 16)) + chunk(b"data", raw, size=0), riff_size=0)
    y, sr = read_wav(io.BytesIO(buf))
    check_audio(y, sr)
    np.testing.assert_allclose(y, values[:, 0], atol=1e-7)


@pytest.mark.parametrize("bad", ["", "no-such-dir/x.wav", "a\0b.wav", "x" * 5000])
def test_read_wav_bad_paths(scratch, bad):
    with pytest.raises(AudioError):
        read_wav(str(scratch / bad) if bad else bad)
    with pytest.raises(AudioError, match="directory"):
        read_wav(str(scratch))


# -- resampling -------------------------------------------------------------------------

rates = st.sampled_from([1000, 8000, 11025, 16000, 22050, 44100, 48000, 96000]) | st.integers(1000, 96000)


@fuzz(80)
@given(rates, rates, st.integers(0, 400), st.integers(0, 2 ** 32 - 1), st.sampled_from([1.0, 1e-30, 0.0]))
@example(1000, 96000, 1, 0, 1.0)
@example(96000, 1000, 3, 0, 1.0)
@example(44100, 16000, 0, 0, 1.0)
@example(44100, 48000, 147, 0, 1.0)
def test_resample_length_and_finiteness(sr_in, sr_out, n, seed, amp):
    y = (amp * np.random.default_rng(seed).uniform(-1, 1, n)).astype(np.float32)
    out = resample(y, sr_in, sr_out)
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == -(-n * sr_out // sr_in)  # ceil(n * sr_out / sr_in), in exact integers
    assert np.all(np.isfinite(out))
    # bounded gain: sum |sinc| over the <= 2 * 3072 taps used here is < 1 + (2/pi)(ln 6144 + 1) < 8
    assert float(np.max(np.abs(out), initial=0.0)) <= 8 * amp + 1e-12


@pytest.mark.parametrize("n,sr_in,sr_out", [(147, 44100, 48000), (147, 11025, 24000), (441, 44100, 16000),
                                            (3347390 // 1090, 6142, 15052)])
def test_resample_length_exact_multiples(n, sr_in, sr_out):
    """When n * sr_out / sr_in is an integer, a float ratio can land just above it and ceil()
    then adds a sample; the length must be computed in integers."""
    assert len(resample(np.zeros(n, np.float32), sr_in, sr_out)) == -(-n * sr_out // sr_in)


# =======================================================================================
# 2. Features
# =======================================================================================

DEFAULT = FeatureConfig()
NORMALISED = FeatureConfig().with_stats(np.linspace(-300, 5, 40), np.linspace(60, 3, 40))


@st.composite
def waveforms(draw, max_len: int = 5000):
    """Finite float32/float64 waveforms of 0..max_len samples: silence, DC, noise at any level
    (denormal to 1e6, and float32's whole range), impulses, clipping square waves."""
    n = draw(st.integers(0, max_len) | st.sampled_from([0, 1, 159, 160, 161, 255, 256, 257, 511, 512, 513]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    kind = draw(st.sampled_from(["zeros", "dc", "noise", "impulse", "square", "elements"]))
    amp = draw(st.sampled_from([0.0, 5e-324, 1e-310, 1e-38, 1e-20, 1e-6, 1.0, 32768.0, 1e6])
               | st.floats(-1e6, 1e6, allow_nan=False))
    if dtype == np.float32:
        amp = float(np.float32(amp))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    if kind == "zeros":
        y = np.zeros(n)
    elif kind == "dc":
        y = np.full(n, amp)
    elif kind == "noise":
        y = amp * rng.uniform(-1, 1, n)
    elif kind == "impulse":
        y = np.zeros(n)
        y[rng.integers(0, n, min(n, 3))] = amp
    elif kind == "square":
        y = amp * np.sign(np.sin(np.arange(n) * 0.05))
    else:  # hypothesis-chosen values (shrinks well), up to float32's full range
        width = 32 if dtype == np.float32 else 64
        big = float(np.finfo(np.float32).max)
        vals = draw(st.lists(st.floats(-big, big, allow_nan=False, width=width), max_size=64))
        y = np.resize(np.asarray(vals or [0.0]), n) if n else np.zeros(0)
    return np.asarray(y, dtype=dtype)


def check_features(f: np.ndarray, n: int, cfg: FeatureConfig) -> None:
    assert f.dtype == np.float32
    assert f.shape == (1 + n // cfg.hop_length, cfg.n_mfcc)
    assert np.all(np.isfinite(f)), "non-finite MFCC for finite audio"


@fuzz(200)
@given(waveforms())
@example(np.zeros(0, np.float32))
@example(np.full(3000, 3.4e38, np.float32))
@example(np.full(777, 5e-324))
def test_mfcc_and_extract_on_arbitrary_audio(y):
    with np.errstate(all="ignore"):  # the assertion is on the output, not on warnings
        check_features(mfcc(y, DEFAULT), len(y), DEFAULT)
        check_features(extract(y, NORMALISED), len(y), NORMALISED)


def test_mfcc_rejects_non_mono():
    with pytest.raises(ValueError):
        mfcc(np.zeros((2, 100), np.float32), DEFAULT)


@st.composite
def feature_configs(draw):
    """Configurations that pass validation (others are skipped): the runtime trusts any config
    a model carries once ``validate`` accepted it."""
    n_fft = draw(st.sampled_from([16, 64, 256, 400, 512, 1024, 2048]) | st.integers(1, 1024).map(lambda k: 2 * k))
    n_mels = draw(st.integers(1, 128))
    sr = draw(st.sampled_from([1000, 8000, 16000, 44100]) | st.integers(1, 48000))
    fmin = draw(st.sampled_from([0.0, 20.0, 300.0]) | st.floats(0, sr / 2, allow_nan=False))
    fmax = draw(st.none() | st.floats(0, sr / 2, allow_nan=False, exclude_min=True)
                | st.just(fmin + 1e-3) | st.just(math.nextafter(fmin, math.inf)))
    try:
        return FeatureConfig(sample_rate=sr, n_fft=n_fft, win_length=draw(st.integers(1, n_fft)),
                             hop_length=draw(st.integers(1, 1024)), window=draw(st.sampled_from(["hamming", "hann"])),
                             n_mels=n_mels, n_mfcc=draw(st.integers(1, n_mels)), fmin=fmin, fmax=fmax,
                             top_db=draw(st.none() | st.floats(1.0, 200.0)))
    except FeatureConfigError:
        assume(False)


@fuzz(150)
@given(feature_configs(), st.integers(0, 3000), st.integers(0, 2 ** 32 - 1))
def test_mfcc_for_any_valid_config(cfg, n, seed):
    y = np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32)
    with np.errstate(all="ignore"):
        check_features(mfcc(y, cfg), n, cfg)


@pytest.mark.parametrize("kwargs", [{"fmin": 1000.0, "fmax": 1000.0001}, {"fmax": 5e-324}, {"n_fft": 511},
                                    {"n_fft": 1, "win_length": 1}, {"top_db": 0.0}, {"top_db": -10.0}])
def test_degenerate_configs_are_refused_or_work(kwargs):
    """Configs at the edge of validation: either refused, or they give finite features."""
    try:
        cfg = FeatureConfig(**kwargs)
    except FeatureConfigError:
        return
    y = np.random.default_rng(0).uniform(-0.5, 0.5, 1600).astype(np.float32)
    with np.errstate(all="ignore"):
        check_features(mfcc(y, cfg), len(y), cfg)
        check_features(mfcc(y[:0], cfg), 0, cfg)


# =======================================================================================
# 3. Model metadata and loaders
# =======================================================================================

json_scalars = (st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12)
nasty_text = st.sampled_from(["", " ", "1", "-1", "0", "[]", "{}", "null", "NaN", "Infinity", "1e400", '"x"',
                              "[" * 3000, '{"a":' * 3000, "\ud800", "\x00", "1" * 5000])
json_text = json_values.map(json.dumps) | nasty_text | st.text(max_size=40)


def mutated(base: Dict[str, object], values=json_values) -> st.SearchStrategy:
    """``base`` with 1-3 keys deleted, replaced by a random value, or added."""
    keys = sorted(base)

    @st.composite
    def strat(draw):
        d = dict(base)
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from(keys) | st.text(max_size=8))
            if draw(st.booleans()) and key in d:
                del d[key]
            else:
                d[key] = draw(values)
        return d

    return strat()


FCFG_DICT = NORMALISED.to_dict()


@fuzz(300)
@given(json_text | mutated(FCFG_DICT).map(lambda d: json.dumps(d))
       | mutated(FCFG_DICT, st.sampled_from([1.5, "x", [], {}, -1, 0, 10 ** 30, True, None,
                                              float("nan"), float("inf"), [1.0] * 40, ["a"] * 40,
                                              [float("nan")] * 40, [0.0] * 40])).map(json.dumps))
@example('{"schema_version": 1, "hop_length": 1.5}')
@example('{"schema_version": 1, "hop_length": 1000000000000000000000000000000}')
@example('{"schema_version": 1, "fmax": "x"}')
@example('{"schema_version": 1, "n_mfcc": 1, "n_mels": 1, "mean": ["a"], "std": [1]}')
@example('{"schema_version": 1, "n_mfcc": 1, "n_mels": 1, "mean": [0], "std": [NaN]}')
@example('{"schema_version": 1, "top_db": NaN}')
@example("[" * 100000)
def test_feature_config_from_json(text):
    try:
        cfg = FeatureConfig.from_json(text)
    except FeatureConfigError as e:
        assert str(e)
        return
    # accepted: the config round-trips and computes finite features of the promised shape
    assert FeatureConfig.from_json(cfg.to_json()) == cfg
    for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "n_mfcc"):
        assert isinstance(getattr(cfg, name), int), f"{name}={getattr(cfg, name)!r} accepted"
    if cfg.n_fft <= 1 << 14 and cfg.n_mels <= 512:  # keep the example cheap
        with np.errstate(all="ignore"):
            check_features(extract(np.linspace(-0.3, 0.3, 1000, dtype=np.float32), cfg), 1000, cfg)


SELFTEST = json.dumps({"sample_rate": 16000, "pcm16_b64": "AAABAA==", "logits": [0.1, -0.2], "atol": 1e-3})
GOOD_PROPS = {**ModelMetadata(NORMALISED, ["a", "b"]).to_props(), PREFIX + "selftest": SELFTEST}
PROP_KEYS = sorted(GOOD_PROPS)


def props_strategy(values) -> st.SearchStrategy:
    """Valid props with entries removed / replaced; the JSON-valued ones also with one inner field
    changed, so the deeper parsers (feature config, self-test) get exercised too."""
    inner = st.one_of(
        mutated(json.loads(GOOD_PROPS[PREFIX + "feature_config"])).map(lambda d: (PREFIX + "feature_config", d)),
        mutated(json.loads(SELFTEST)).map(lambda d: (PREFIX + "selftest", d)),
    )
    return st.one_of(
        mutated(GOOD_PROPS, values),
        inner.map(lambda kv: {**GOOD_PROPS, kv[0]: json.dumps(kv[1])}),
        st.dictionaries(st.sampled_from(PROP_KEYS) | st.text(max_size=10), values, max_size=8),
    )


def check_metadata(meta: ModelMetadata) -> None:
    assert isinstance(meta.labels, list) and meta.labels and all(isinstance(x, str) for x in meta.labels)
    assert isinstance(meta.feature_config, FeatureConfig) and meta.feature_config.is_normalised
    assert isinstance(meta.model_config, dict)
    if meta.selftest is not None:
        st_ = meta.selftest
        assert isinstance(st_.sample_rate, int) and st_.waveform.dtype == np.float32 and st_.waveform.ndim == 1
        assert st_.logits.dtype == np.float32 and st_.logits.ndim == 1
        assert math.isfinite(st_.atol)


@fuzz(400)
@given(props_strategy(json_text))
@example({**GOOD_PROPS, PREFIX + "labels": "[" * 100000})
@example({**GOOD_PROPS, PREFIX + "selftest": '{"sample_rate": Infinity, "pcm16_b64": "", "logits": []}'})
@example({**GOOD_PROPS, PREFIX + "selftest": '{"sample_rate": 1e400, "pcm16_b64": "", "logits": []}'})
@example({**GOOD_PROPS, PREFIX + "selftest": '{"sample_rate": 16000, "pcm16_b64": "", "logits": [[1], 2]}'})
@example({**GOOD_PROPS, PREFIX + "model_config": "[1, 2]"})
def test_metadata_from_string_props(props):
    try:
        meta = ModelMetadata.from_props(props, source="m.onnx")
    except MetadataError as e:
        assert "m.onnx" in str(e)
        return
    check_metadata(meta)


@fuzz(200)
@given(props_strategy(json_values))
@example({**GOOD_PROPS, PREFIX + "metadata_schema": [1]})
@example({**GOOD_PROPS, PREFIX + "metadata_schema": None})
@example({**GOOD_PROPS, PREFIX + "feature_config": 5})
def test_metadata_from_non_string_props(props):
    """An npz's ``__metadata__`` is any JSON object, so values need not be strings."""
    try:
        meta = ModelMetadata.from_props(props, source="m.npz")
    except MetadataError:
        return
    check_metadata(meta)


# -- model files ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(random_checkpoint, tmp_path_factory) -> Dict[str, str]:
    """A small LSTM exported to ONNX and npz (parity not gated: the model is untrained)."""
    pytest.importorskip("onnxruntime")
    from ser_edge.export import export_all

    out = tmp_path_factory.mktemp("fuzz-export")
    export_all(str(random_checkpoint(hidden_size=8, num_layers=2, n_classes=3)), str(out),
               formats=("onnx", "numpy"), gate=False)
    return {"onnx": str(out / "model.onnx"), "npz": str(out / "model.npz")}


def load_or_error(path: str):
    """``Recognizer.load``; ``None`` when it raised a :class:`SerEdgeError` with the path in it."""
    from ser_edge.runtime.recognizer import Recognizer

    try:
        rec = Recognizer.load(path)
    except SerEdgeError as e:
        assert os.path.basename(path) in str(e) or "backend" in str(e), str(e)
        return None
    check_metadata(rec.metadata)
    return rec


def run_or_error(rec) -> None:
    """A model that loaded must also run (or refuse with a SerEdgeError), giving finite logits."""
    feats = np.random.default_rng(0).standard_normal((2, 6, rec.feature_config.n_mfcc)).astype(np.float32)
    try:
        logits = rec.logits(feats, np.array([6, 3], dtype=np.int64))
    except SerEdgeError:
        return
    assert logits.shape == (2, len(rec.labels)) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits))


@fuzz(80)
@given(st.sampled_from([".onnx", ".npz", ".tflite"]),
       st.binary(max_size=400) | st.binary(max_size=400).map(lambda b: b"PK\x03\x04" + b)
       | st.binary(max_size=400).map(lambda b: b[:4] + b"TFL3" + b[4:]))
def test_load_random_bytes(scratch, ext, data):
    assert load_or_error(write_tmp(scratch, data, ext)) is None


def test_load_bad_paths(scratch):
    from ser_edge.runtime.recognizer import Recognizer

    for path in [scratch / "missing.onnx", scratch / "model.pt", scratch / "noext"]:
        with pytest.raises(SerEdgeError):
            Recognizer.load(path)
    (scratch / "dir.onnx").mkdir()
    with pytest.raises(SerEdgeError):
        Recognizer.load(scratch / "dir.onnx")


def test_exports_load_and_run(exported):
    for path in exported.values():
        rec = load_or_error(path)
        assert rec is not None, path
        run_or_error(rec)


@fuzz(40)
@given(st.data())
def test_load_truncated_or_corrupted_onnx(exported, scratch, data):
    blob = Path(exported["onnx"]).read_bytes()
    cut = data.draw(st.integers(0, len(blob) - 1))
    # a prefix: the metadata is serialised last, so any prefix must be refused
    assert load_or_error(write_tmp(scratch, blob[:cut], ".onnx")) is None


@fuzz(40)
@given(props_strategy(json_text | st.text(max_size=20)).filter(lambda p: all(isinstance(v, str) for v in p.values())))
def test_load_onnx_with_corrupted_metadata(exported, scratch, props):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(exported["onnx"])
    del model.metadata_props[:]
    try:
        for k, v in props.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = k, v
        blob = model.SerializeToString()
    except ValueError:  # protobuf refuses text that is not valid UTF-8 (lone surrogates): no such file
        assume(False)
    rec = load_or_error(write_tmp(scratch, blob, ".onnx"))
    if rec is not None:
        assert rec.metadata == ModelMetadata.from_props(props)
        run_or_error(rec)


@fuzz(40)
@given(st.data())
def test_load_corrupted_onnx_bytes(exported, scratch, data):
    """Flipped bytes: parse errors, but also invalid UTF-8 in names/metadata and odd weights."""
    blob = bytearray(Path(exported["onnx"]).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    rec = load_or_error(write_tmp(scratch, bytes(blob), ".onnx"))
    if rec is not None:
        run_or_error(rec)


def test_load_onnx_with_invalid_utf8_metadata(exported, scratch):
    blob = Path(exported["onnx"]).read_bytes()
    assert blob.count(b"neutral") == 1  # inside the labels JSON of the metadata props
    assert load_or_error(write_tmp(scratch, blob.replace(b"neutral", b"neutr\xffl"), ".onnx")) is None


def test_onnx_with_nan_weights_refuses_to_predict(exported, scratch):
    """Corrupt weights that still parse: the run must fail loudly, not softmax NaN into label 0."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(exported["onnx"])
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(np.full_like(arr, np.nan), init.name))
    rec = load_or_error(write_tmp(scratch, model.SerializeToString(), ".onnx"))
    assert rec is not None
    with pytest.raises(SerEdgeError):
        rec.logits(np.zeros((1, 4, rec.feature_config.n_mfcc), np.float32), np.array([4]))


@fuzz(20)
@given(st.binary(max_size=600).map(lambda b: b[:4] + b"TFL3" + b[4:]) | st.binary(max_size=600))
def test_load_random_tflite_bytes_with_sidecar(scratch, data):
    """Metadata and the file's sha256 from a valid sidecar, so the bytes reach the LiteRT engine itself."""
    pytest.importorskip("ai_edge_litert")
    from ser_edge.runtime.backends.litert import DIGEST_KEY, file_digest

    path = write_tmp(scratch, data, ".tflite")
    Path(path + ".json").write_text(json.dumps({**GOOD_PROPS, DIGEST_KEY: file_digest(data)}))
    assert load_or_error(path) is None


def npz_bytes(arrays: Dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


array_values = st.one_of(
    st.sampled_from([np.array(0), np.array(-1), np.array(10 ** 6), np.array("x"), np.array([1, 2]), np.zeros((0,)),
                     np.array(1.5), np.array(True), np.zeros((2, 0)), np.array(["a", "b"]), np.array(b"\x00\xff"),
                     np.full((4, 4), np.nan, np.float32), np.array("ser-edge-npz")]),
    st.tuples(st.lists(st.integers(0, 6), max_size=3), st.sampled_from(["<f4", "<f8", "<i8", "<f2", "u1"]))
    .map(lambda sd: np.ones(sd[0], dtype=sd[1])),
    json_text.map(np.array),
)


@fuzz(120)
@given(st.data())
def test_load_npz_with_missing_or_corrupted_arrays(exported, scratch, data):
    with np.load(exported["npz"], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    keys = sorted(arrays)
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(keys), label="key")
        action = data.draw(st.sampled_from(["drop", "replace", "metadata", "transpose"]), label="action")
        if action == "drop":
            arrays.pop(key, None)
        elif action == "replace":
            arrays[key] = data.draw(array_values, label="value")
        elif action == "metadata":
            arrays["__metadata__"] = np.array(json.dumps(data.draw(props_strategy(json_values), label="props")))
        elif key in arrays:
            arrays[key] = np.ascontiguousarray(arrays[key].T)
    rec = load_or_error(write_tmp(scratch, npz_bytes(arrays), ".npz"))
    if rec is not None:
        run_or_error(rec)


@pytest.mark.parametrize("change", [{"__num_layers__": np.array(0)}, {"__num_layers__": np.array(-1)},
                                    {"__format_version__": np.array("x")},
                                    {"__format_version__": np.array([1, 1])},
                                    {"lstm.l0.W_hh": np.ones(8, np.float32)},
                                    {"lstm.l1.W_ih": np.ones((32, 5), np.float32)},
                                    {"head.W": np.ones((3, 5), np.float32)},
                                    {"__metadata__": np.array("[" * 100000)},
                                    {"__metadata__": np.array(json.dumps({**GOOD_PROPS,
                                                                          PREFIX + "labels": "[" * 100000}))},
                                    {"__arch__": np.array("attn_bilstm")},
                                    {"head.b": np.full(3, np.nan, np.float32)}])
def test_load_npz_regressions(exported, scratch, change):
    with np.load(exported["npz"], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(change)
    rec = load_or_error(write_tmp(scratch, npz_bytes(arrays), ".npz"))
    if rec is not None:
        run_or_error(rec)


def test_load_npz_with_unknown_compression_method(exported, scratch):
    blob = bytearray(Path(exported["npz"]).read_bytes())
    central = blob.index(b"PK\x01\x02")  # first central directory entry (what zipfile trusts)
    blob[central + 10:central + 12] = struct.pack("<H", 99)  # its compression method
    assert load_or_error(write_tmp(scratch, bytes(blob), ".npz")) is None


@fuzz(40)
@given(st.data())
def test_load_corrupted_npz_bytes(exported, scratch, data):
    blob = bytearray(Path(exported["npz"]).read_bytes())
    if data.draw(st.booleans()):
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    rec = load_or_error(write_tmp(scratch, bytes(blob), ".npz"))
    if rec is not None:
        run_or_error(rec)


# -- checkpoints ------------------------------------------------------------------------

def load_ckpt_or_error(path: str):
    from ser_edge.checkpoint import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as e:
        assert str(e)
        return None
    assert ckpt.labels and all(isinstance(x, str) for x in ckpt.labels), ckpt.labels
    assert isinstance(ckpt.extra, dict)
    return ckpt


@pytest.fixture(scope="module")
def checkpoint_bytes(random_checkpoint) -> bytes:
    return Path(random_checkpoint(hidden_size=8, num_layers=1, n_classes=3)).read_bytes()


@fuzz(60)
@given(st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: b"PK\x03\x04" + b)
       | st.binary(max_size=300).map(lambda b: b"\x80\x02" + b))
def test_load_checkpoint_random_bytes(scratch, data):
    assert load_ckpt_or_error(write_tmp(scratch, data, ".pt")) is None


@fuzz(60)
@given(st.data())
def test_load_checkpoint_truncated_or_flipped(checkpoint_bytes, scratch, data):
    blob = bytearray(checkpoint_bytes)
    if data.draw(st.booleans()):
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    load_ckpt_or_error(write_tmp(scratch, bytes(blob), ".pt"))


@fuzz(80)
@given(st.data())
def test_load_checkpoint_fuzzed_payload(checkpoint_bytes, scratch, data):
    torch = pytest.importorskip("torch")
    payload = torch.load(io.BytesIO(checkpoint_bytes), weights_only=True)
    values = json_values | st.sampled_from([torch.zeros(3), torch.zeros(0), torch.ones(2, 2, dtype=torch.int64)])
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(["top", "model_config", "feature_config", "state_dict", "extra"]))
        target = payload if where == "top" else payload.get(where)
        if not isinstance(target, dict) or not target:
            continue
        key = data.draw(st.sampled_from(sorted(target)) | st.text(max_size=6))
        if data.draw(st.booleans()) and key in target:
            del target[key]
        else:
            target[key] = data.draw(values)
    buf = io.BytesIO()
    torch.save(payload, buf)
    load_ckpt_or_error(write_tmp(scratch, buf.getvalue(), ".pt"))


TENSOR = "<a 3-element tensor>"  # parametrize without importing torch at collection time


@pytest.mark.parametrize("key,value", [("model_config", [1]), ("model_config", "lstm"), ("feature_config", [1]),
                                       ("extra", [1, 2]), ("extra", "ab"), ("extra", TENSOR), ("state_dict", [1]),
                                       ("state_dict", 5), ("labels", 5), ("labels", [1, 2, 3]), ("labels", "abc"),
                                       ("format_version", TENSOR), ("model_config.hidden_size", 2 ** 40),
                                       ("model_config.arch", TENSOR), ("feature_config.schema_version", TENSOR),
                                       ("feature_config.mean", TENSOR)])
def test_load_checkpoint_payload_regressions(checkpoint_bytes, scratch, key, value):
    torch = pytest.importorskip("torch")
    payload = torch.load(io.BytesIO(checkpoint_bytes), weights_only=True)
    value = torch.zeros(3) if value == TENSOR else value
    *outer, key = key.split(".")
    (payload[outer[0]] if outer else payload)[key] = value
    buf = io.BytesIO()
    torch.save(payload, buf)
    load_ckpt_or_error(write_tmp(scratch, buf.getvalue(), ".pt"))
