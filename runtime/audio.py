"""WAV reading and resampling with the standard library and numpy only.

Python's ``wave`` module (3.11) reads integer PCM but rejects IEEE float and most
WAVE_FORMAT_EXTENSIBLE files, so the RIFF chunks are walked here with ``struct`` instead:
one parser for every format, each failure mapped to :class:`AudioError` with the path in it.
"""

from __future__ import annotations

import io
import math
import os
import struct
from typing import BinaryIO, Tuple, Union

import numpy as np

from .errors import SerEdgeError

PathOrFile = Union[str, "os.PathLike[str]", BinaryIO]

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# GUID tail shared by KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT; the first two bytes are the format.
_KSDATAFORMAT_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"

#: Limits that flag a corrupt header rather than a real recording.
MAX_CHANNELS = 32
MIN_RATE, MAX_RATE = 1000, 384000
MAX_SECONDS = 3 * 3600


class AudioError(SerEdgeError, ValueError):
    """The input is not a readable, sensible WAV file. The message says why."""


def _name(src: PathOrFile) -> str:
    return os.fspath(src) if isinstance(src, (str, os.PathLike)) else getattr(src, "name", "<stream>")


def _read_bytes(src: PathOrFile) -> bytes:
    if isinstance(src, (str, os.PathLike)):
        try:
            with open(src, "rb") as f:
                return f.read()
        except IsADirectoryError:
            raise AudioError(f"{_name(src)}: is a directory, not a WAV file") from None
        except FileNotFoundError:
            raise AudioError(f"{_name(src)}: no such file") from None
        except OSError as e:
            raise AudioError(f"{_name(src)}: cannot read ({e.strerror or e})") from None
        except ValueError as e:  # e.g. an embedded NUL byte in the path
            raise AudioError(f"{_name(src)!r}: invalid path ({e})") from None
    return src.read()


def _parse_fmt(body: bytes, name: str) -> Tuple[int, int, int, int]:
    """-> (format_tag, channels, sample_rate, bits_per_sample), extensible resolved."""
    if len(body) < 16:
        raise AudioError(f"{name}: 'fmt ' chunk too short ({len(body)} bytes)")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(body) < 40:
            raise AudioError(f"{name}: WAVE_FORMAT_EXTENSIBLE header too short")
        valid_bits = struct.unpack("<H", body[18:20])[0]
        sub = body[24:40]
        if sub[2:] != _KSDATAFORMAT_TAIL:
            raise AudioError(f"{name}: unsupported WAVE_FORMAT_EXTENSIBLE sub-format")
        tag = struct.unpack("<H", sub[:2])[0]
        # Container width is what matters for decoding; valid_bits only says how many are used.
        del valid_bits
    if tag not in (WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT):
        raise AudioError(f"{name}: unsupported WAV encoding (format tag 0x{tag:04x}); "
                         "expected PCM or IEEE float")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{name}: absurd channel count {channels}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"{name}: absurd sample rate {rate} Hz")
    ok_bits = (8, 16, 24, 32) if tag == WAVE_FORMAT_PCM else (32, 64)
    if bits not in ok_bits:
        raise AudioError(f"{name}: unsupported {bits}-bit {'PCM' if tag == 1 else 'float'} samples")
    if block_align != channels * bits // 8:
        raise AudioError(f"{name}: inconsistent block align {block_align} for {channels}x{bits}-bit")
    return tag, channels, rate, bits


def _decode(data: bytes, tag: int, channels: int, bits: int) -> np.ndarray:
    """Raw sample bytes -> ``(n_frames, channels)``: float32 in [-1, 1] for PCM, float64 as stored
    for IEEE float (unbounded, maybe non-finite: :func:`read_wav` checks and clips)."""
    width = bits // 8
    usable = len(data) - len(data) % (width * channels)  # drop a trailing partial frame
    raw = data[:usable]
    if tag == WAVE_FORMAT_IEEE_FLOAT:
        # kept in float64 until clipped: a finite double beyond float32's range must not turn inf
        x = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
    elif bits == 8:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif bits == 16:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    else:
        x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    return x.reshape(-1, channels)


def read_wav(src: PathOrFile) -> Tuple[np.ndarray, int]:
    """Read a WAV file. Returns ``((n_samples,) float32 mono in [-1, 1], sample_rate)``.

    Multi-channel audio is averaged to mono. Raises :class:`AudioError` for anything that is
    not a complete, sensible PCM/float WAV (truncated, empty, another format, absurd header).
    """
    name = _name(src)
    buf = _read_bytes(src)
    if len(buf) == 0:
        raise AudioError(f"{name}: empty file")
    if len(buf) < 12 or buf[:4] not in (b"RIFF", b"RIFX") or buf[8:12] != b"WAVE":
        raise AudioError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    if buf[:4] == b"RIFX":
        raise AudioError(f"{name}: big-endian RIFX WAV is not supported")
    fmt = None
    data = None
    declared_data = 0
    riff_size = struct.unpack("<I", buf[4:8])[0]
    # A RIFF size that is a placeholder or does not cover the file marks a header never patched
    # (streaming writers); only then is a 0-byte 'data' chunk read as "to the end of the file",
    # so a genuinely empty data chunk followed by other chunks stays empty.
    unpatched = riff_size in (0, 0xFFFFFFFF) or riff_size + 8 < len(buf)
    pos = 12
    while pos + 8 <= len(buf):
        cid, size = struct.unpack("<4sI", buf[pos:pos + 8])
        body = buf[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < size:
                raise AudioError(f"{name}: truncated 'fmt ' chunk")
            fmt = _parse_fmt(body, name)
        elif cid == b"data":
            if size == 0xFFFFFFFF or (size == 0 and fmt is not None and unpatched):
                # A streaming writer never patched its header: the audio runs to the end of the file.
                body = buf[pos + 8:]
            data, declared_data = body, size
            if fmt is not None:
                break
        pos += 8 + size + (size & 1)  # chunks are word aligned
    if fmt is None:
        raise AudioError(f"{name}: no 'fmt ' chunk")
    if data is None:
        raise AudioError(f"{name}: no 'data' chunk")
    tag, channels, rate, bits = fmt
    # A 0 or 0xFFFFFFFF size is what streaming writers leave behind; trust the bytes present.
    if declared_data not in (0, 0xFFFFFFFF) and len(data) < declared_data:
        raise AudioError(f"{name}: truncated: header promises {declared_data} bytes of audio, "
                         f"file has {len(data)}")
    frames = _decode(data, tag, channels, bits)
    if frames.shape[0] == 0:
        raise AudioError(f"{name}: contains no audio samples")
    if frames.shape[0] > MAX_SECONDS * rate:
        raise AudioError(f"{name}: longer than {MAX_SECONDS // 3600} h; refusing to load it whole")
    if not np.all(np.isfinite(frames)):
        raise AudioError(f"{name}: contains NaN or infinite samples")
    if tag == WAVE_FORMAT_IEEE_FLOAT:
        # Float files may hold samples beyond +-1 (an unclipped mix); clip them as playback would,
        # so every caller gets the documented range.
        frames = np.clip(frames, -1.0, 1.0)
    mono = frames.mean(axis=1, dtype=np.float32) if channels > 1 else frames[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), rate


def _sinc_kernel(dist: np.ndarray, cutoff: float, half: int, beta: float = 8.6) -> np.ndarray:
    """Kaiser-windowed sinc evaluated at fractional tap distances (in input samples)."""
    window = np.i0(beta * np.sqrt(np.clip(1.0 - (dist / (half + 1)) ** 2, 0.0, 1.0))) / np.i0(beta)
    return cutoff * np.sinc(cutoff * dist) * window


def resample(y: np.ndarray, sr_in: int, sr_out: int, taps_per_side: int = 32) -> np.ndarray:
    """Band-limited resampling with a Kaiser-windowed sinc (numpy only).

    ``(n,) float -> (ceil(n * sr_out / sr_in),) float32``. The cut-off sits at 95 % of the lower
    Nyquist frequency so downsampling does not alias. For rational ratios (every real pair of
    rates) the filter is tabulated once per output phase, so the cost is one gather and
    multiply-add per tap; memory is bounded by processing the output in chunks.
    """
    y = np.asarray(y, dtype=np.float64)
    if sr_in == sr_out:
        return y.astype(np.float32)
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError("sample rates must be positive")
    g = math.gcd(int(sr_in), int(sr_out))
    up, down = sr_out // g, sr_in // g
    ratio = up / down
    cutoff = 0.95 * min(1.0, ratio)  # relative to the input Nyquist
    half = int(np.ceil(taps_per_side / min(1.0, ratio)))  # widen the kernel when downsampling
    offsets = np.arange(-half + 1, half + 1)
    n_out = -(-len(y) * up // down)  # ceil(n * up / down) in integers: a float ratio can round up
    padded = np.pad(y, (half, half + 1))
    # up phases x taps: the fractional position of output n is ((n * down) % up) / up
    table = _sinc_kernel(np.arange(up)[:, None] / up - offsets[None, :], cutoff, half) if up <= 4096 else None
    out = np.empty(n_out, dtype=np.float32)
    chunk = max(1, 2_000_000 // len(offsets))
    for start in range(0, n_out, chunk):
        n = np.arange(start, min(n_out, start + chunk), dtype=np.int64)
        base, phase = np.divmod(n * down, up)
        idx = base[:, None] + offsets[None, :] + half
        if table is not None:
            kernel = table[phase]
        else:  # pathological ratio: evaluate the kernel directly
            kernel = _sinc_kernel((phase / up)[:, None] - offsets[None, :], cutoff, half)
        out[start:start + len(n)] = np.einsum("ij,ij->i", padded[idx], kernel)
    return out


def load_audio(src: PathOrFile, sample_rate: int) -> np.ndarray:
    """Read a WAV and resample it to ``sample_rate``. ``-> (n_samples,) float32 mono``."""
    y, sr = read_wav(src)
    return resample(y, sr, sample_rate) if sr != sample_rate else y


def write_wav(path: Union[str, "os.PathLike[str]"], y: np.ndarray, sample_rate: int) -> None:
    """Write ``(n_samples,)`` float audio as 16-bit PCM mono, atomically."""
    from .io import atomic_write_bytes

    pcm = (np.clip(np.asarray(y, dtype=np.float64), -1.0, 1.0 - 1.0 / 32768) * 32768.0).astype("<i2")
    data = pcm.tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16,
                         WAVE_FORMAT_PCM, 1, sample_rate, sample_rate * 2, 2, 16, b"data", len(data))
    atomic_write_bytes(path, header + data)


def wav_bytes_to_array(data: bytes) -> Tuple[np.ndarray, int]:
    """:func:`read_wav` for bytes already in memory."""
    return read_wav(io.BytesIO(data))
