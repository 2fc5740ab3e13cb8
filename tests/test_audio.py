"""WAV reading/writing and resampling (``ser_edge.runtime.audio``).

Every test file is built here byte by byte with ``struct``, so the reader is checked against the
RIFF/WAVE layout itself rather than against another library's writer.
"""

from __future__ import annotations

import io
import os
import struct
import wave

import numpy as np
import pytest

from ser_edge.runtime.audio import (
    AudioError,
    load_audio,
    read_wav,
    resample,
    wav_bytes_to_array,
    write_wav,
)
from ser_edge.runtime.errors import SerEdgeError

SR = 16000
PCM, FLOAT, EXTENSIBLE, ADPCM = 0x0001, 0x0003, 0xFFFE, 0x0002
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


# ---------------------------------------------------------------------------------------
# building WAV bytes
# ---------------------------------------------------------------------------------------

def chunk(cid: bytes, body: bytes, size: int | None = None) -> bytes:
    """One RIFF chunk, padded to an even length as the format requires."""
    size = len(body) if size is None else size
    return struct.pack("<4sI", cid, size) + body + (b"\x00" if len(body) % 2 else b"")


def fmt_body(tag: int, channels: int, rate: int, bits: int, *, extensible_sub: int | None = None,
             valid_bits: int | None = None, block_align: int | None = None) -> bytes:
    """A 'fmt ' chunk body; with ``extensible_sub`` a 40-byte WAVE_FORMAT_EXTENSIBLE one."""
    align = channels * bits // 8 if block_align is None else block_align
    base = struct.pack("<HHIIHH", EXTENSIBLE if extensible_sub is not None else tag, channels, rate,
                       rate * align, align, bits)
    if extensible_sub is None:
        return base
    mask = (1 << channels) - 1
    return base + struct.pack("<HHI", 22, valid_bits or bits, mask) + struct.pack("<H", extensible_sub) + _GUID_TAIL


def riff(*chunks: bytes) -> bytes:
    payload = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def encode(x: np.ndarray, tag: int, bits: int) -> bytes:
    """Interleaved samples ``(n,)`` or ``(n, channels)`` in [-1, 1] -> little-endian sample bytes."""
    x = np.asarray(x, dtype=np.float64)
    if tag == FLOAT:
        return x.astype("<f4" if bits == 32 else "<f8").tobytes()
    full = float(1 << (bits - 1))
    q = np.clip(np.round(x * full), -full, full - 1).astype(np.int64)
    if bits == 8:  # 8-bit WAV is unsigned with a 128 offset
        return (q + 128).astype(np.uint8).tobytes()
    if bits == 24:
        return (q.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]).tobytes()
    return q.astype({16: "<i2", 32: "<i4"}[bits]).tobytes()


def make_wav(x: np.ndarray, tag: int = PCM, bits: int = 16, rate: int = SR, extensible: bool = False,
             before_data: bytes = b"") -> bytes:
    channels = 1 if x.ndim == 1 else x.shape[1]
    fmt = fmt_body(tag, channels, rate, bits, extensible_sub=tag if extensible else None)
    return riff(chunk(b"fmt ", fmt), before_data, chunk(b"data", encode(x, tag, bits)))


def tone(n: int = 1600, freq: float = 440.0, amp: float = 0.8, rate: int = SR) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def quant_step(tag: int, bits: int) -> float:
    """Largest decoding error expected: one LSB, but never below float32 rounding of the output
    (a 32-bit PCM LSB, 2**-31, is finer than float32 can represent near full scale)."""
    return 1e-7 if tag == FLOAT else max(1.0 / (1 << (bits - 1)), 1e-7)


# ---------------------------------------------------------------------------------------
# decoding every supported encoding
# ---------------------------------------------------------------------------------------

ENCODINGS = [
    (PCM, 8, False), (PCM, 16, False), (PCM, 24, False), (PCM, 32, False),
    (FLOAT, 32, False), (FLOAT, 64, False),
    (PCM, 16, True), (PCM, 24, True), (PCM, 32, True), (FLOAT, 32, True), (FLOAT, 64, True),
]


@pytest.mark.parametrize("tag,bits,extensible", ENCODINGS)
def test_read_every_encoding(tmp_path, tag, bits, extensible):
    x = tone(1601)  # odd count: exercises the pad byte after an odd-sized 8-bit data chunk
    x[10], x[11] = 1.0, -1.0  # full scale both ways
    path = tmp_path / "x.wav"
    path.write_bytes(make_wav(x, tag, bits, rate=22050, extensible=extensible))
    y, sr = read_wav(path)
    assert sr == 22050
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.all(np.abs(y) <= 1.0)
    np.testing.assert_allclose(y, x, rtol=0, atol=quant_step(tag, bits))


@pytest.mark.parametrize("tag,bits", [(PCM, 8), (PCM, 16), (PCM, 24), (PCM, 32), (FLOAT, 32)])
def test_stereo_is_averaged_to_mono(tmp_path, tag, bits):
    left, right = tone(800, 300, 0.6), tone(800, 1100, 0.3)
    path = tmp_path / "st.wav"
    path.write_bytes(make_wav(np.stack([left, right], axis=1), tag, bits, extensible=(bits == 24)))
    y, sr = read_wav(path)
    assert sr == SR and y.shape == (800,)
    np.testing.assert_allclose(y, (left + right) / 2, atol=quant_step(tag, bits))


def test_multichannel_extensible(tmp_path):
    x = np.stack([tone(500, 200 * (c + 1), 0.2) for c in range(6)], axis=1)  # 5.1 layout
    path = tmp_path / "six.wav"
    path.write_bytes(make_wav(x, PCM, 16, extensible=True))
    y, _ = read_wav(path)
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1 / 32768)


def test_extensible_container_wider_than_valid_bits(tmp_path):
    # 20 valid bits in a 24-bit container: decode by the container width.
    x = tone(400)
    fmt = fmt_body(PCM, 1, SR, 24, extensible_sub=PCM, valid_bits=20)
    path = tmp_path / "x.wav"
    path.write_bytes(riff(chunk(b"fmt ", fmt), chunk(b"data", encode(x, PCM, 24))))
    np.testing.assert_allclose(read_wav(path)[0], x, atol=2 ** -23)


def test_stdlib_wave_writer_agrees(tmp_path):
    # An independent writer: Python's wave module (16-bit and 8-bit PCM).
    x = tone(1000, 523.0, 0.7)
    for width, dtype, scale, offset in ((2, "<i2", 32768.0, 0), (1, np.uint8, 128.0, 128)):
        path = tmp_path / f"w{width}.wav"
        q = np.clip(np.round(x * scale) + offset, 0 if width == 1 else -32768, 255 if width == 1 else 32767)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(width)
            w.setframerate(8000)
            w.writeframes(q.astype(dtype).tobytes())
        y, sr = read_wav(path)
        assert sr == 8000
        np.testing.assert_allclose(y, (q - offset) / scale, atol=1e-7)


def test_odd_sized_chunks_before_data_are_skipped(tmp_path):
    x = tone(300)
    info = b"INFOISFT" + struct.pack("<I", 5) + b"abcde"
    assert len(info) % 2 == 1  # odd size: the reader must skip the pad byte after it
    extra = chunk(b"LIST", info) + chunk(b"fact", struct.pack("<I", 300))
    path = tmp_path / "x.wav"
    path.write_bytes(make_wav(x, before_data=extra))
    np.testing.assert_allclose(read_wav(path)[0], x, atol=1 / 32768)


def test_data_before_fmt_and_trailing_chunks(tmp_path):
    x = tone(300)
    body = riff(chunk(b"data", encode(x, PCM, 16)), chunk(b"fmt ", fmt_body(PCM, 1, SR, 16)),
                chunk(b"id3 ", b"\x01\x02\x03"))
    path = tmp_path / "x.wav"
    path.write_bytes(body)
    np.testing.assert_allclose(read_wav(path)[0], x, atol=1 / 32768)


def test_streaming_size_placeholder_reads_to_end(tmp_path):
    # Writers that stream to a pipe leave 0xFFFFFFFF as the data size.
    x = tone(500)
    data = encode(x, PCM, 16)
    buf = riff(chunk(b"fmt ", fmt_body(PCM, 1, SR, 16))) + struct.pack("<4sI", b"data", 0xFFFFFFFF) + data
    path = tmp_path / "x.wav"
    path.write_bytes(buf)
    np.testing.assert_allclose(read_wav(path)[0], x, atol=1 / 32768)


def test_trailing_partial_frame_is_dropped(tmp_path):
    x = np.stack([tone(100), tone(100)], axis=1)
    data = encode(x, PCM, 16) + b"\x01\x02"  # half a stereo frame
    path = tmp_path / "x.wav"
    path.write_bytes(riff(chunk(b"fmt ", fmt_body(PCM, 2, SR, 16)), chunk(b"data", data)))
    y, _ = read_wav(path)
    assert y.shape == (100,)


def test_file_objects_and_bytes():
    x = tone(700)
    blob = make_wav(x, FLOAT, 32)
    y1, sr1 = read_wav(io.BytesIO(blob))
    y2, sr2 = wav_bytes_to_array(blob)
    assert sr1 == sr2 == SR
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(y1, x, atol=1e-7)


# ---------------------------------------------------------------------------------------
# errors: every one an AudioError naming the file
# ---------------------------------------------------------------------------------------

def _good_fmt(**kw) -> bytes:
    args = dict(tag=PCM, channels=1, rate=SR, bits=16)
    args.update(kw)
    return fmt_body(args["tag"], args["channels"], args["rate"], args["bits"])


BAD_FILES = {
    "empty": b"",
    "not_wav": b"ID3\x03\x00\x00\x00\x00 this is an mp3, honest" * 3,
    "riff_not_wave": b"RIFF\x10\x00\x00\x00AVI LIST\x00\x00\x00\x00",
    "too_short": b"RIFF",
    "big_endian": b"RIFX" + struct.pack(">I", 4) + b"WAVE",
    "truncated_data": riff(chunk(b"fmt ", _good_fmt())) + struct.pack("<4sI", b"data", 32000) + b"\x00\x01" * 100,
    "missing_fmt": riff(chunk(b"data", b"\x00\x00" * 100)),
    "missing_data": riff(chunk(b"fmt ", _good_fmt()), chunk(b"LIST", b"INFO")),
    "no_samples": riff(chunk(b"fmt ", _good_fmt()), chunk(b"data", b"")),
    "short_fmt": riff(chunk(b"fmt ", b"\x01\x00\x01\x00"), chunk(b"data", b"\x00\x00" * 10)),
    "adpcm": riff(chunk(b"fmt ", fmt_body(ADPCM, 1, SR, 4, block_align=256)), chunk(b"data", b"\x00" * 512)),
    "mulaw": riff(chunk(b"fmt ", fmt_body(0x0007, 1, 8000, 8)), chunk(b"data", b"\x00" * 512)),
    "zero_channels": riff(chunk(b"fmt ", _good_fmt(channels=0)), chunk(b"data", b"\x00\x00" * 10)),
    "absurd_channels": riff(chunk(b"fmt ", _good_fmt(channels=4000)), chunk(b"data", b"\x00\x00" * 8000)),
    "zero_rate": riff(chunk(b"fmt ", _good_fmt(rate=0)), chunk(b"data", b"\x00\x00" * 10)),
    "absurd_rate": riff(chunk(b"fmt ", _good_fmt(rate=50_000_000)), chunk(b"data", b"\x00\x00" * 10)),
    "pcm_12bit": riff(chunk(b"fmt ", fmt_body(PCM, 1, SR, 12, block_align=2)), chunk(b"data", b"\x00\x00" * 10)),
    "float_16bit": riff(chunk(b"fmt ", fmt_body(FLOAT, 1, SR, 16)), chunk(b"data", b"\x00\x00" * 10)),
    "bad_block_align": riff(chunk(b"fmt ", fmt_body(PCM, 2, SR, 16, block_align=2)), chunk(b"data", b"\x00" * 40)),
    "extensible_short": riff(chunk(b"fmt ", struct.pack("<HHIIHH", EXTENSIBLE, 1, SR, SR * 2, 2, 16)),
                             chunk(b"data", b"\x00\x00" * 10)),
    "extensible_unknown_guid": riff(
        chunk(b"fmt ", fmt_body(PCM, 1, SR, 16, extensible_sub=PCM)[:26] + b"\xde\xad" * 7),
        chunk(b"data", b"\x00\x00" * 10)),
    "extensible_adpcm": riff(chunk(b"fmt ", fmt_body(PCM, 1, SR, 16, extensible_sub=ADPCM)),
                             chunk(b"data", b"\x00\x00" * 10)),
    "nan_samples": riff(chunk(b"fmt ", fmt_body(FLOAT, 1, SR, 32)),
                        chunk(b"data", np.array([0.1, np.nan, 0.2], "<f4").tobytes())),
    "inf_samples": riff(chunk(b"fmt ", fmt_body(FLOAT, 1, SR, 64)),
                        chunk(b"data", np.array([0.1, np.inf], "<f8").tobytes())),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_audio_error_with_path(tmp_path, name):
    path = tmp_path / f"{name}.wav"
    path.write_bytes(BAD_FILES[name])
    with pytest.raises(AudioError) as info:
        read_wav(path)
    assert str(path) in str(info.value)
    # load_audio goes through the same checks
    with pytest.raises(AudioError):
        load_audio(str(path), SR)


def test_truncated_message_says_truncated(tmp_path):
    path = tmp_path / "t.wav"
    path.write_bytes(BAD_FILES["truncated_data"])
    with pytest.raises(AudioError, match="truncated"):
        read_wav(path)


def test_unsupported_format_tag_is_named(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(BAD_FILES["adpcm"])
    with pytest.raises(AudioError, match="0x0002"):
        read_wav(path)


def test_directory_and_missing_file(tmp_path):
    for target in (tmp_path, tmp_path / "nope.wav"):
        with pytest.raises(AudioError) as info:
            read_wav(target)
        assert str(target) in str(info.value)
        with pytest.raises(AudioError):
            read_wav(str(target))


def test_audio_error_is_user_facing():
    assert issubclass(AudioError, SerEdgeError) and issubclass(AudioError, ValueError)


# ---------------------------------------------------------------------------------------
# write_wav
# ---------------------------------------------------------------------------------------

def test_write_wav_round_trip(tmp_path):
    x = tone(4001, 700.0, 0.9).astype(np.float32)
    path = tmp_path / "sub" / "out.wav"  # parent created on demand
    write_wav(path, x, 22050)
    y, sr = read_wav(path)
    assert sr == 22050 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1 / 32768)
    # a standard reader agrees on the header
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 22050, 4001)
    # atomic write: nothing but the file is left in the directory
    assert os.listdir(path.parent) == ["out.wav"]


def test_write_wav_clips_out_of_range(tmp_path):
    path = tmp_path / "c.wav"
    write_wav(path, np.array([2.0, -2.0, 1.0, -1.0, 0.5]), SR)
    y, _ = read_wav(path)
    np.testing.assert_allclose(y, [1 - 1 / 32768, -1.0, 1 - 1 / 32768, -1.0, 0.5], atol=1e-7)


def test_write_wav_overwrites(tmp_path):
    path = tmp_path / "o.wav"
    write_wav(path, np.zeros(10), SR)
    write_wav(path, np.full(20, 0.25), 8000)
    y, sr = read_wav(path)
    assert sr == 8000 and y.shape == (20,) and np.allclose(y, 0.25)


# ---------------------------------------------------------------------------------------
# resample
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,sr_in,sr_out", [
    (16000, 16000, 8000), (16001, 16000, 8000), (1001, 16000, 44100), (44100, 44100, 16000),
    (48000, 48000, 16000), (999, 22050, 16000), (1, 8000, 16000), (0, 16000, 8000),
])
def test_resample_length(n, sr_in, sr_out):
    out = resample(np.zeros(n, dtype=np.float32), sr_in, sr_out)
    assert out.dtype == np.float32
    assert len(out) == int(np.ceil(n * sr_out / sr_in))


def test_resample_identity_and_bad_rates():
    x = tone(100).astype(np.float32)
    np.testing.assert_array_equal(resample(x, SR, SR), x)
    for a, b in ((0, 16000), (16000, -1)):
        with pytest.raises(ValueError):
            resample(x, a, b)


def _interior(x: np.ndarray, frac: float = 0.05) -> np.ndarray:
    # Edges see the zero padding beyond the signal; judge the filter on the interior.
    k = int(len(x) * frac)
    return x[k:len(x) - k]


def test_sine_survives_round_trip_via_44k1():
    x = tone(16000, 1000.0, 0.5)
    up = resample(x, 16000, 44100)
    back = resample(up, 44100, 16000)
    assert len(back) == len(x)
    # the upsampled signal is the same sine on the finer grid
    np.testing.assert_allclose(_interior(up), _interior(tone(44100, 1000.0, 0.5, rate=44100)), atol=1e-3)
    np.testing.assert_allclose(_interior(back), _interior(x), atol=1e-3)


def test_downsampling_removes_content_above_new_nyquist():
    x = tone(16000, 7000.0, 0.5)  # above 4 kHz: would alias to 1 kHz without a low-pass
    y = resample(x, 16000, 8000)
    rms_in, rms_out = np.sqrt(np.mean(x ** 2)), np.sqrt(np.mean(_interior(y) ** 2))
    assert rms_out < 1e-3 * rms_in  # at least 60 dB down


def test_downsampling_keeps_passband():
    x = tone(16000, 3000.0, 0.5)
    y = resample(x, 16000, 8000)
    np.testing.assert_allclose(_interior(y), _interior(tone(8000, 3000.0, 0.5, rate=8000)), atol=5e-3)


def _lowpass(x: np.ndarray, sr: int, cutoff_hz: float) -> np.ndarray:
    """Brick-wall low-pass via the FFT (test-side only)."""
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(len(x), 1.0 / sr) > cutoff_hz] = 0.0
    return np.fft.irfft(spec, len(x))


def _compare_with_soxr(y: np.ndarray, sr_out: int) -> tuple:
    """-> (full-band relative RMS diff, in-band relative RMS diff) of ours vs librosa soxr_hq.

    The two filters differ only in their transition band (ours: Kaiser sinc, cut-off at 95 % of
    the lower Nyquist; soxr_hq: steeper), so the in-band part (below 80 % of it) must agree
    closely while the full band only agrees loosely."""
    librosa = pytest.importorskip("librosa")
    pytest.importorskip("soxr")
    ours = resample(y, 16000, sr_out)
    ref = librosa.resample(y, orig_sr=16000, target_sr=sr_out, res_type="soxr_hq").astype(np.float64)
    assert len(ours) == len(ref)
    diff = ours.astype(np.float64) - ref
    inband = _lowpass(diff, sr_out, 0.8 * min(16000, sr_out) / 2)
    ref_rms = np.sqrt(np.mean(ref ** 2))
    return (np.sqrt(np.mean(_interior(diff) ** 2)) / ref_rms, np.sqrt(np.mean(_interior(inband) ** 2)) / ref_rms)


@pytest.mark.parametrize("sr_out", [8000, 22050, 44100])
def test_resample_close_to_librosa_soxr(speechlike, sr_out):
    full, inband = _compare_with_soxr(speechlike, sr_out)
    assert full <= 0.05
    assert inband <= 1e-3


def _resample_by_definition(y: np.ndarray, sr_in: int, sr_out: int, taps_per_side: int = 32) -> np.ndarray:
    """The filter :func:`resample` promises, evaluated output by output in float64 (slow, obvious):
    output n at input position t = n * sr_in / sr_out is sum_i y[i] * kernel(t - i) over the
    2 * half inputs with i - floor(t) in (-half, half]."""
    from math import gcd

    from ser_edge.runtime.audio import _sinc_kernel

    g = gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    half = int(np.ceil(taps_per_side / min(1.0, up / down)))
    cutoff = 0.95 * min(1.0, up / down)
    y = np.asarray(y, dtype=np.float64)
    out = np.zeros(-(-len(y) * up // down))
    for n in range(len(out)):
        base, phase = divmod(n * down, up)
        i = np.arange(base - half + 1, base + half + 1)
        ok = (i >= 0) & (i < len(y))
        out[n] = np.dot(y[i[ok]], _sinc_kernel(phase / up - (i[ok] - base), cutoff, half))
    return out


@pytest.mark.parametrize("sr_in,sr_out,taps", [
    (48000, 16000, 48), (44100, 16000, 48), (22050, 16000, 48), (8000, 16000, 48), (11025, 16000, 32),
    (32000, 16000, 32), (88200, 16000, 48), (96000, 16000, 32), (16000, 44100, 48), (14400, 16000, 8),
    (17600, 16000, 8),
])
def test_resample_equals_its_definition(speechlike, sr_in, sr_out, taps):
    """The tabulated float32 GEMM path computes exactly the documented filter (to float32 rounding)
    for every common rate, and for training's speed perturbation (8 taps, 0.9x / 1.1x)."""
    from ser_edge.runtime.audio import DEFAULT_TAPS

    rng = np.random.default_rng(sr_in)
    y = (0.5 * rng.uniform(-1, 1, 2 * sr_in // 100 + 7)).astype(np.float32)  # 20 ms, ragged length
    ours = resample(y, sr_in, sr_out) if taps == DEFAULT_TAPS else resample(y, sr_in, sr_out, taps_per_side=taps)
    ref = _resample_by_definition(y, sr_in, sr_out, taps)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6)


@pytest.mark.parametrize("sr_in,sr_out", [(44101, 16000), (16000, 44101), (12345, 8000), (44100, 16000)])
def test_dft_path_is_the_same_filter(sr_in, sr_out):
    """Ratios whose polyphase table would be huge go through the DFT; it applies the same kind of
    kernel (sampled at integer lags, a slightly lower cut-off), so it agrees with the
    definition in band; tones come out exact."""
    from ser_edge.runtime.audio import _geometry, _resample_fft

    y = (0.5 * np.random.default_rng(1).uniform(-1, 1, 3000)).astype(np.float32)
    ref = _resample_by_definition(y, sr_in, sr_out)
    geo = _geometry(sr_in, sr_out, 32)
    ours = _resample_fft(y, geo, len(ref))
    assert ours.dtype == np.float32
    # White noise up to its Nyquist: the two differ in the transition band (the DFT path's sits
    # lower and drops what lies beyond the Nyquist), hardly below 70 % of the lower Nyquist.
    inband = _interior(_lowpass(ours - ref, sr_out, 0.7 * min(sr_in, sr_out) / 2), 0.1)
    assert np.sqrt(np.mean(inband ** 2)) <= 3e-3 * np.sqrt(np.mean(ref ** 2))
    tone_in = tone(3000, 1000.0, 0.5, rate=sr_in).astype(np.float32)
    expected = tone(len(ref), 1000.0, 0.5, rate=sr_out)
    np.testing.assert_allclose(_interior(_resample_fft(tone_in, geo, len(ref)), 0.1),
                               _interior(expected, 0.1), atol=1e-4)


def test_dft_path_segments_join_seamlessly(monkeypatch):
    """Long inputs go through the DFT path in segments with context; the seams are invisible."""
    from ser_edge.runtime import audio

    y = (0.5 * np.random.default_rng(2).uniform(-1, 1, 20000)).astype(np.float32)
    for sr_in, sr_out in ((48000, 16000), (16000, 44101)):
        geo = audio._geometry(sr_in, sr_out, 32)
        n_out = -(-len(y) * geo.up // geo.down)
        with monkeypatch.context() as m:
            m.setattr(audio, "_FFT_SEGMENT", 1 << 30)
            whole = audio._resample_fft(y, geo, n_out)
        with monkeypatch.context() as m:
            m.setattr(audio, "_FFT_SEGMENT", 5000)  # 2 to 4 segments
            np.testing.assert_allclose(audio._resample_fft(y, geo, n_out), whole, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sr_in", [383999, 95999, 44101])
def test_odd_rates_are_correct(sr_in):
    """Rates with no small ratio to 16 kHz (pattern repeating only every ~16000 outputs): exact
    length, a 1 kHz tone comes out as that tone, and a tone above the new Nyquist is removed."""
    n = sr_in // 2
    for freq, expected_amp in ((1000.0, 0.5), (9000.0, 0.0)):
        out = resample(tone(n, freq, 0.5, rate=sr_in).astype(np.float32), sr_in, 16000)
        assert len(out) == -(-n * 16000 // sr_in)
        expected = tone(len(out), freq, expected_amp, rate=16000)
        np.testing.assert_allclose(_interior(out), _interior(expected), atol=2e-3)


@pytest.mark.realdata
@pytest.mark.parametrize("sr_out", [8000, 44100])
def test_resample_close_to_librosa_soxr_on_real_speech(ravdess_wavs, sr_out):
    # Measured on RAVDESS: full band <= 2.6 % relative RMS (all of it above 7 kHz, where the
    # transition bands differ), in band ~2e-5.
    for path in ravdess_wavs[::4]:
        full, inband = _compare_with_soxr(read_wav(path)[0], sr_out)
        assert full <= 0.05, path
        assert inband <= 1e-3, path


@pytest.mark.realdata
def test_load_audio_resamples_real_speech(ravdess_wavs):
    path = ravdess_wavs[0]
    y16, sr = read_wav(path)
    y8 = load_audio(path, 8000)
    assert sr == 16000 and len(y8) == int(np.ceil(len(y16) / 2))
    np.testing.assert_array_equal(load_audio(path, 16000), y16)


def test_streaming_zero_size_placeholder_reads_to_end(tmp_path):
    x = tone(500)
    buf = riff(chunk(b"fmt ", fmt_body(PCM, 1, SR, 16))) + struct.pack("<4sI", b"data", 0) + encode(x, PCM, 16)
    path = tmp_path / "x.wav"
    path.write_bytes(buf)
    np.testing.assert_allclose(read_wav(path)[0], x, atol=1 / 32768)


@pytest.mark.parametrize("channels", [2, 3, 6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_downmix_is_the_channel_mean_bit_for_bit(channels, dtype):
    """read_wav's down-mix sums whole columns (numpy's reduction along a length-2 axis cost more
    than resampling and MFCC together) and gives exactly ``mean(axis=1, dtype=float32)``."""
    from ser_edge.runtime.audio import _downmix

    frames = np.random.default_rng(channels).uniform(-1, 1, (5000, channels)).astype(dtype)
    mono = _downmix(frames)
    assert mono.dtype == np.float32 and mono.shape == (5000,)
    np.testing.assert_array_equal(mono, frames.mean(axis=1, dtype=np.float32))


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_pcm16_fast_path_equals_decode_then_downmix(tmp_path, channels):
    """16-bit PCM is down-mixed in the integer domain (no (n, channels) float intermediate); the
    result must be bit for bit what decoding every channel and taking their float32 mean gives,
    full-scale extremes included."""
    from ser_edge.runtime.audio import WAVE_FORMAT_PCM, _decode, _downmix

    rng = np.random.default_rng(channels)
    pcm = rng.integers(-32768, 32768, (7001, channels)).astype("<i2")
    pcm[:3] = [[-32768] * channels, [32767] * channels, [-32768, 32767] * (channels // 2) + [0] * (channels % 2)]
    path = tmp_path / "x.wav"
    path.write_bytes(riff(chunk(b"fmt ", fmt_body(PCM, channels, SR, 16)) + chunk(b"data", pcm.tobytes())))
    expected = _downmix(_decode(pcm.tobytes(), WAVE_FORMAT_PCM, channels, 16))
    y, sr = read_wav(path)
    assert sr == SR and y.dtype == np.float32
    np.testing.assert_array_equal(y, expected)
