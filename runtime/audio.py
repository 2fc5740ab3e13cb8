"""WAV reading and resampling with the standard library and numpy only.

Python's ``wave`` module (3.11) reads integer PCM but rejects IEEE float and most
WAVE_FORMAT_EXTENSIBLE files, so the RIFF chunks are walked here with ``struct`` instead:
one parser for every format, each failure mapped to :class:`AudioError` with the path in it.

Hostile files (docs/robustness.md): only regular files are opened (a FIFO or device would block
or never end); the header is checked against the file's real size and the caller's duration
limit before any sample is read; samples are decoded in bounded blocks (:data:`BLOCK_BYTES`).
"""

from __future__ import annotations

import io
import math
import os
import stat
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO, Iterator, Optional, Tuple, Union

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
#: Samples are decoded in blocks of at most this many bytes, so reading never holds the raw file
#: (or a float64 copy of it) in memory: only the ``(n,) float32`` mono result grows with the file.
BLOCK_BYTES = 1 << 20
#: A non-seekable stream is buffered whole; more than this is refused (pass a file instead).
MAX_STREAM_BYTES = 64 << 20
#: Shortest usable clip: 10 MFCC frames at the default 10 ms hop.
MIN_DURATION_S = 0.1
#: A clip whose peak stays below -80 dBFS (the MFCC's own ``top_db`` range) carries no signal
#: the features can see; classifying (or training on) it would learn or report an emotion for silence.
SILENCE_PEAK = 1e-4


class AudioError(SerEdgeError, ValueError):
    """The input is not a readable, sensible WAV file. The message says why."""


class AudioTooLongError(AudioError):
    """The header says the audio is longer than the caller's limit (raised before any sample is read)."""

    def __init__(self, message: str, seconds: float, limit: float) -> None:
        super().__init__(message)
        self.seconds, self.limit = seconds, limit


def _name(src: PathOrFile) -> str:
    return os.fspath(src) if isinstance(src, (str, os.PathLike)) else getattr(src, "name", "<stream>")


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def file_kind(mode: int) -> str:
    """``st_mode`` -> what kind of file it is, in words (``"a FIFO (named pipe)"``, ...)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: Union[str, os.PathLike[str]], what: str = "WAV file") -> BinaryIO:
    """Open a *regular* file for binary reading, or raise :class:`AudioError`.

    A FIFO, device or socket would block ``open()`` or ``read()`` forever (or stream without
    end), so the kind is checked with ``os.stat`` before opening, and again on the open
    descriptor (``O_NONBLOCK`` guards the window in between: opening a FIFO cannot block)."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
        if not stat.S_ISREG(st.st_mode):
            raise AudioError(f"{name}: is {file_kind(st.st_mode)}, not a {what}")
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except AudioError:  # not a regular file: already the message (AudioError is a ValueError)
        raise
    except FileNotFoundError:
        raise AudioError(f"{name}: no such file") from None
    except OSError as e:
        raise AudioError(f"{name}: cannot read ({e.strerror or e})") from None
    except ValueError as e:  # e.g. an embedded NUL byte in the path
        raise AudioError(f"{name!r}: invalid path ({e})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # replaced between stat and open
        os.close(fd)
        raise AudioError(f"{name}: is {file_kind(mode)}, not a {what}")
    return os.fdopen(fd, "rb")


@contextmanager
def _opened(src: PathOrFile) -> Iterator[BinaryIO]:
    """A seekable binary file for ``src``: a path opened with :func:`open_regular`, or the given
    file object (a non-seekable stream is buffered, up to :data:`MAX_STREAM_BYTES`)."""
    if isinstance(src, (str, os.PathLike)):
        with open_regular(src) as f:
            yield f
        return
    seekable = getattr(src, "seekable", None)
    if seekable is not None and seekable():
        yield src
        return
    data = src.read(MAX_STREAM_BYTES + 1)
    if len(data) > MAX_STREAM_BYTES:
        raise AudioError(f"{_name(src)}: a non-seekable stream over {MAX_STREAM_BYTES >> 20} MiB; pass a file")
    yield io.BytesIO(data)


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


def _decode(data: Union[bytes, memoryview], tag: int, channels: int, bits: int) -> np.ndarray:
    """Raw sample bytes -> ``(n_frames, channels)``: float32 in [-1, 1] for PCM, float64 as stored
    for IEEE float (unbounded, maybe non-finite: :func:`read_wav` checks and clips)."""
    width = bits // 8
    usable = len(data) - len(data) % (width * channels)  # drop a trailing partial frame
    raw = data[:usable]
    if tag == WAVE_FORMAT_IEEE_FLOAT:
        # kept in float64 until clipped: a finite double beyond float32's range must not turn inf
        x: np.ndarray = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
    elif bits == 8:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif bits == 16:
        x = from_pcm16(np.frombuffer(raw, dtype="<i2"))
    elif bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    else:
        x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    return x.reshape(-1, channels)


@dataclass(frozen=True)
class WavInfo:
    """What a WAV header says, checked against the file's real size; no sample decoded yet."""

    name: str
    format_tag: int  # WAVE_FORMAT_PCM or WAVE_FORMAT_IEEE_FLOAT (extensible resolved)
    channels: int
    sample_rate: int
    bits: int
    data_offset: int  # byte position of the first sample
    n_frames: int  # complete sample frames present in the file (a trailing partial frame dropped)

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.bits // 8

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.sample_rate


def _parse_header(f: BinaryIO, name: str) -> WavInfo:
    """Walk the RIFF chunks of a seekable file, reading headers only (a chunk body is never
    read, whatever size it claims). Raises :class:`AudioError`."""
    base = f.tell()
    total = f.seek(0, io.SEEK_END) - base
    f.seek(base)
    head = f.read(12)
    if total == 0:
        raise AudioError(f"{name}: empty file")
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        raise AudioError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    if head[:4] == b"RIFX":
        raise AudioError(f"{name}: big-endian RIFX WAV is not supported")
    fmt = None
    data = None
    declared_data = 0
    riff_size = struct.unpack("<I", head[4:8])[0]
    # A RIFF size that is a placeholder or does not cover the file marks a header never patched
    # (streaming writers); only then is a 0-byte 'data' chunk read as "to the end of the file",
    # so a genuinely empty data chunk followed by other chunks stays empty.
    unpatched = riff_size in (0, 0xFFFFFFFF) or riff_size + 8 < total
    pos = 12
    while pos + 8 <= total:
        f.seek(base + pos)
        cid, size = struct.unpack("<4sI", f.read(8))
        if cid == b"fmt ":
            if pos + 8 + size > total:
                raise AudioError(f"{name}: truncated 'fmt ' chunk")
            fmt = _parse_fmt(f.read(min(size, 64)), name)  # _parse_fmt reads 40 bytes at most
        elif cid == b"data":
            present = min(size, total - pos - 8)
            if size == 0xFFFFFFFF or (size == 0 and fmt is not None and unpatched):
                # A streaming writer never patched its header: the audio runs to the end of the file.
                present = total - pos - 8
            data, declared_data = (base + pos + 8, present), size
            if fmt is not None:
                break
        pos += 8 + size + (size & 1)  # chunks are word aligned
    if fmt is None:
        raise AudioError(f"{name}: no 'fmt ' chunk")
    if data is None:
        raise AudioError(f"{name}: no 'data' chunk")
    tag, channels, rate, bits = fmt
    # A 0 or 0xFFFFFFFF size is what streaming writers leave behind; trust the bytes present.
    if declared_data not in (0, 0xFFFFFFFF) and data[1] < declared_data:
        raise AudioError(f"{name}: truncated: header promises {declared_data} bytes of audio, "
                         f"file has {data[1]}")
    return WavInfo(name, tag, channels, rate, bits, data[0], data[1] // (channels * bits // 8))


def _check_length(info: WavInfo, max_seconds: float) -> None:
    if info.n_frames == 0:
        raise AudioError(f"{info.name}: contains no audio samples")
    if info.n_frames > max_seconds * info.sample_rate:
        limit = f"{max_seconds // 3600:.0f} h" if max_seconds >= 3600 else f"{max_seconds:g} s"
        raise AudioTooLongError(f"{info.name}: {info.duration_s:.1f} s of audio, longer than {limit}; "
                                "refusing to load it whole", info.duration_s, max_seconds)


def _downmix(frames: np.ndarray) -> np.ndarray:
    """Channel mean, ``(n, channels) -> (n,) float32``, as ``frames.mean(axis=1, dtype=float32)``
    but column by column: numpy reduces a length-2 axis at ~20 ns a frame (2.6 ms for 3 s of
    44.1 kHz stereo, more than resampling and MFCC together), whole columns at ~1 ns."""
    mono = frames[:, 0].astype(np.float32)
    for c in range(1, frames.shape[1]):
        np.add(mono, frames[:, c], out=mono, dtype=np.float32)
    mono /= np.float32(frames.shape[1])
    return mono


#: Samples (all channels) down-mixed per matmul by :func:`_pcm16_mono`: 128 KiB of float32.
_PCM_SLICE = 1 << 15


def _pcm16_mono(raw: Union[bytes, memoryview], channels: int) -> np.ndarray:
    """16-bit PCM frames -> ``(n,) float32`` mono, bit for bit ``_downmix(_decode(raw, PCM, channels,
    16))`` without the ``(n, channels)`` float32 intermediate: matrix-vector products (3.8 s of
    44.1 kHz stereo: 0.09 ms instead of 0.7). Exact in any summation order: with weights
    ``w = 2**-15 / channels`` (used when ``channels`` is a power of two, so ``w`` is one too)
    every product and partial sum is an integer of magnitude below ``2**24`` times ``w``, which
    float32 holds exactly; for other channel counts the weights are 1 (exact integer sums) and
    one correctly rounded division by ``32768 * channels`` gives the float that scaling each
    channel and dividing their exact sum by ``channels`` gives."""
    pcm = np.frombuffer(raw, dtype="<i2")
    if channels == 1:
        return from_pcm16(pcm)
    pcm = pcm[:len(pcm) - len(pcm) % channels].reshape(-1, channels)
    exact = channels & (channels - 1) == 0
    weights = np.full(channels, 2.0 ** -15 / channels if exact else 1.0, dtype=np.float32)
    mono = np.empty(len(pcm), dtype=np.float32)
    # in slices: matmul widens int16 to a float32 copy, and a copy of the whole block would be a
    # fresh mmap that the kernel faults in page by page on every call (that cost more than the sum)
    step = max(1, _PCM_SLICE // channels)
    for i in range(0, len(pcm), step):
        np.matmul(pcm[i:i + step], weights, out=mono[i:i + step])
    if not exact:
        mono /= np.float32(32768 * channels)
    return mono


_READ = threading.local()


def _read_exactly(f: BinaryIO, n: int) -> Optional[memoryview]:
    """The next ``n`` bytes of ``f`` (None if the file ends first), in a per-thread buffer reused
    by every read: valid until this thread's next read, so decoders copy out of it. A fresh
    ``bytes`` per read would be a fresh mmap for any block over 128 KiB, faulted in page by page:
    ~0.4 ms for a 3 s 44.1 kHz stereo file, more than decoding it."""
    readinto = getattr(f, "readinto", None)
    if readinto is None:  # a minimal file-like object
        data = f.read(n)
        return memoryview(data) if len(data) == n else None
    buf = getattr(_READ, "buf", None)
    if buf is None or len(buf) < n:
        buf = _READ.buf = bytearray(max(n, 1 << 16))
    view = memoryview(buf)[:n]
    got = 0
    while got < n:
        m = readinto(view[got:])
        if not m:
            return None
        got += m
    return view


def _blocks(f: BinaryIO, info: WavInfo, block_frames: int) -> Iterator[np.ndarray]:
    """Decode ``info``'s samples ``block_frames`` at a time. Yields ``(k,) float32`` mono in [-1, 1]."""
    f.seek(info.data_offset)
    left = info.n_frames
    while left > 0:
        k = min(block_frames, left)
        raw = _read_exactly(f, k * info.frame_bytes)
        if raw is None:
            raise AudioError(f"{info.name}: file shrank while it was being read")
        if info.format_tag == WAVE_FORMAT_PCM and info.bits == 16 and info.channels <= 512:  # sums < 2**24
            yield _pcm16_mono(raw, info.channels)  # integer PCM: always finite, in range
            left -= k
            continue
        frames = _decode(raw, info.format_tag, info.channels, info.bits)
        if not np.all(np.isfinite(frames)):
            raise AudioError(f"{info.name}: contains NaN or infinite samples")
        if info.format_tag == WAVE_FORMAT_IEEE_FLOAT:
            # Float files may hold samples beyond +-1 (an unclipped mix); clip them as playback would,
            # so every caller gets the documented range.
            frames = np.clip(frames, -1.0, 1.0)
        mono = _downmix(frames) if info.channels > 1 else frames[:, 0]
        yield np.ascontiguousarray(mono, dtype=np.float32)
        left -= k


def wav_info(src: PathOrFile) -> WavInfo:
    """The checked header of a WAV file (format, rate, length) without decoding any sample."""
    with _opened(src) as f:
        return _parse_header(f, _name(src))


def iter_wav(src: PathOrFile, block_frames: int = 16000,
             max_seconds: float = float("inf")) -> Iterator[Tuple[np.ndarray, int]]:
    """Stream a WAV file: ``((k,) float32 mono block, sample_rate)`` pairs, ``k <= block_frames``.
    Memory stays one block whatever the file's length; the header is checked before the first
    block (:class:`AudioError` as for :func:`read_wav`)."""
    if block_frames < 1:
        raise ValueError("block_frames must be >= 1")
    with _opened(src) as f:
        info = _parse_header(f, _name(src))
        _check_length(info, max_seconds)
        for block in _blocks(f, info, block_frames):
            yield block, info.sample_rate


def read_wav(src: PathOrFile, max_seconds: float = MAX_SECONDS) -> Tuple[np.ndarray, int]:
    """Read a WAV file. Returns ``((n_samples,) float32 mono in [-1, 1], sample_rate)``.

    Multi-channel audio is averaged to mono. Raises :class:`AudioError` for anything that is
    not a complete, sensible PCM/float WAV (truncated, empty, another format, absurd header, not
    a regular file) and :class:`AudioTooLongError` when the header says it lasts longer than
    ``max_seconds``: checked before any sample is read. Samples are decoded in bounded blocks
    (:data:`BLOCK_BYTES`), so the peak memory is the float32 result plus one block; running out
    of memory anyway is an :class:`AudioError` for this file, not a ``MemoryError``.
    """
    name = _name(src)
    with _opened(src) as f:
        info = _parse_header(f, name)
        _check_length(info, max_seconds)
        try:
            block_frames = max(1, BLOCK_BYTES // info.frame_bytes)
            if info.n_frames <= block_frames:  # one block: it is the result (no copy)
                return next(_blocks(f, info, block_frames)), info.sample_rate
            out = np.empty(info.n_frames, dtype=np.float32)
            pos = 0
            for block in _blocks(f, info, block_frames):
                out[pos:pos + len(block)] = block
                pos += len(block)
        except MemoryError:
            raise AudioError(f"{name}: not enough memory to read {info.duration_s:.0f} s of audio") from None
    return out, info.sample_rate


def _sinc_kernel(dist: np.ndarray, cutoff: float, half: int, beta: float = 8.6) -> np.ndarray:
    """Kaiser-windowed sinc evaluated at fractional tap distances (in input samples)."""
    window = np.i0(beta * np.sqrt(np.clip(1.0 - (dist / (half + 1)) ** 2, 0.0, 1.0))) / np.i0(beta)
    return cutoff * np.sinc(cutoff * dist) * window


#: Kaiser-windowed sinc taps per side (at the lower rate). 48 puts the whole transition band
#: (-0.9 dB at 7.4 kHz, -6 dB at 7.6, -20 dB at 7.8 kHz for 16 kHz out) below the new Nyquist:
#: tones that would alias are >= 90 dB down. 32 taps cost 30 % less but let 8.0-8.4 kHz alias
#: at only -40 dB.
DEFAULT_TAPS = 48
#: Outputs per GEMM column block: wide enough for an efficient BLAS call, narrow enough that the
#: input span a block reads (``block * down / up + 2 * half``) wastes little on zero coefficients.
_BLOCK = 32
#: Polyphase tables larger than this (float32 coefficients, 4 MiB; ratios like 383999 -> 16000 Hz,
#: whose pattern repeats only every 16000 outputs) use the DFT path instead. Every common rate's
#: table is far smaller (88.2 -> 16 kHz, the largest: 0.1 M), and at most 16 are cached.
_MAX_TABLE = 1 << 20
#: The DFT path's cut-off is ``1 - _DFT_MARGIN / taps_per_side`` of the lower Nyquist (0.9375 at
#: 48 taps; lower than the GEMM path's 0.95) so that the kernel is down >= 80 dB at the output
#: Nyquist, where the DFT cuts the spectrum: a brick wall through the transition band would ring
#: (1 / t tails) and make the result depend on the transform length.
_DFT_MARGIN = 3.0
#: Input samples per FFT segment (rounded to a multiple of ``down``): bounds the FFT path's memory.
_FFT_SEGMENT = 1 << 20


@dataclass(frozen=True)
class _Geometry:
    """Ratio ``up / down`` in lowest terms and the filter: output ``n`` sits at input position
    ``n * down / up`` and is ``sum_i y[i] * kernel(n * down / up - i)`` over the ``2 * half``
    inputs ``i`` with ``i - floor(n * down / up)`` in ``(-half, half]``."""

    up: int
    down: int
    half: int
    cutoff: float  # relative to the input Nyquist
    taps: int  # taps_per_side it was made for


def _geometry(sr_in: int, sr_out: int, taps_per_side: int) -> _Geometry:
    g = math.gcd(int(sr_in), int(sr_out))
    up, down = sr_out // g, sr_in // g
    ratio = up / down
    half = int(np.ceil(taps_per_side / min(1.0, ratio)))  # widen the kernel when downsampling
    return _Geometry(up, down, half, 0.95 * min(1.0, ratio), taps_per_side)  # cut-off: 95 % of the lower Nyquist


@dataclass(frozen=True)
class _Plan:
    """The polyphase filter as GEMM operands. The output is cut into rows of ``q`` ratio periods
    (``up * q`` outputs fed by ``down * q`` inputs); every row has the same phases, so each column
    block ``(first output, input offset, (span, width) float32 coefficients)`` is one matrix for
    all rows, and the rows' inputs are a strided view of the padded signal (no copy)."""

    geo: _Geometry
    q: int
    blocks: Tuple[Tuple[int, int, np.ndarray], ...]
    reach: int  # padded input a row reads past its own ``down * q`` samples


@lru_cache(maxsize=16)
def _plan(geo: _Geometry) -> Optional[_Plan]:
    """Tabulate the kernel for every output phase (cached per ratio and filter; a plan costs
    more than resampling a short clip). ``None`` when the table would exceed ``_MAX_TABLE``."""
    up, down, half = geo.up, geo.down, geo.half
    # A column block of <= _BLOCK outputs reads at most this many inputs; rows must not overlap
    # (BLAS needs a row stride >= the row length), hence the smallest q whose row input covers it.
    span_max = (_BLOCK - 1) * down // up + 1 + 2 * half
    q = max(-(-_BLOCK // up), -(-span_max // down))
    n_blocks = -(-up * q // _BLOCK)
    if up * q * span_max > _MAX_TABLE:
        return None
    width = -(-up * q // n_blocks)
    taps = np.arange(-half + 1, half + 1)
    blocks, reach = [], 0
    for i0 in range(0, up * q, width):
        i = np.arange(i0, min(i0 + width, up * q), dtype=np.int64)
        base, phase = np.divmod(i * down, up)
        start = int(base[0]) + 1  # padded index of the block's first input (the pad is `half`)
        span = int(base[-1] - base[0]) + 2 * half
        table = np.zeros((span, len(i)))
        rows = (base - base[0])[:, None] + (taps + half - 1)[None, :]
        table[rows, np.arange(len(i))[:, None]] = _sinc_kernel((phase / up)[:, None] - taps[None, :], geo.cutoff, half)
        table = table.astype(np.float32)
        table.setflags(write=False)
        blocks.append((i0, start, table))
        reach = max(reach, start + span - down * q)
    return _Plan(geo, q, tuple(blocks), reach)


def _resample_gemm(y: np.ndarray, plan: _Plan, n_out: int) -> np.ndarray:
    """``(n,) float32 -> (n_out,) float32`` with one float32 GEMM per column block."""
    geo = plan.geo
    row_in, row_out = geo.down * plan.q, geo.up * plan.q
    n_rows = -(-n_out // row_out)
    padded = np.zeros(n_rows * row_in + plan.reach, dtype=np.float32)
    padded[geo.half:geo.half + len(y)] = y[:len(padded) - geo.half]
    out = np.empty((n_rows, row_out), dtype=np.float32)
    step = padded.strides[0]
    for i0, start, table in plan.blocks:
        rows = np.lib.stride_tricks.as_strided(padded[start:], shape=(n_rows, table.shape[0]),
                                               strides=(row_in * step, step), writeable=False)
        np.matmul(rows, table, out=out[:, i0:i0 + table.shape[1]])
    return out.reshape(-1)[:n_out]


def _fast_len(n: int) -> int:
    """Smallest 2^a * 3^b * 5^c >= n: a length pocketfft transforms fast."""
    best, p5 = 1 << max(0, (n - 1).bit_length()), 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35 << max(0, (-(-n // p35) - 1).bit_length())  # p35 * smallest power of 2 >= n / p35
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _dft_bins(x: np.ndarray, n: int, k: int) -> np.ndarray:
    """First ``k`` bins of the length-``n`` DFT of ``x`` zero-padded to ``n``, for any ``n``
    (Bluestein: ``jm = (j^2 + m^2 - (j - m)^2) / 2`` turns it into a convolution done with
    fast-length FFTs). Cost ``O((len(x) + k) log)``, not ``O(n)``: pocketfft is O(n * p) for
    a length with a large prime factor ``p`` (0.6 s for 3 x 383999). ``-> (k,) complex128``."""
    m = len(x)
    t = np.arange(-(m - 1), max(m, k), dtype=np.int64)
    chirp = np.exp(1j * np.pi * ((t * t) % (2 * n)) / n)  # exp(i pi t^2 / n), t^2 reduced exactly
    size = _fast_len(m + k - 1)
    a = np.fft.fft(x * chirp[m - 1:2 * m - 1].conj(), size)
    b = np.fft.fft(chirp[:m + k - 1], size)
    return np.fft.ifft(a * b)[m - 1:m - 1 + k] * chirp[m - 1:m - 1 + k].conj()


def _resample_fft(y: np.ndarray, geo: _Geometry, n_out: int) -> np.ndarray:
    """Any ratio, by the DFT: ``y`` convolved with the Kaiser-windowed sinc sampled at integer
    lags (cut-off: see ``_DFT_MARGIN``), with the spectrum cut at (or zero-extended to) the
    output Nyquist: no aliasing at all; at 48 taps flat to 85 % of the lower Nyquist, -0.5 dB
    at 90 %. A zero tail of ``2 * half + 2`` samples (rounded so the transform length is a
    multiple of ``down``) keeps the circular convolution from wrapping; only the bins and
    outputs needed are computed (:func:`_dft_bins`).
    Segments of ``_FFT_SEGMENT`` inputs with ``ctx`` samples of context each side (multiples of
    ``down``, so each segment's output grid is the global one) bound the memory.
    ``(n,) float32 -> (n_out,) float32``."""
    up, down, half = geo.up, geo.down, geo.half
    ctx = down * -(-(half + 1) // down)
    seg = down * max(1, _FFT_SEGMENT // down)
    cutoff = min(0.95, max(0.5, 1.0 - _DFT_MARGIN / geo.taps)) * min(1.0, up / down)
    taps = _sinc_kernel(np.arange(half + 1, dtype=np.float64), cutoff, half)
    taps[0] /= 2  # H(f) = h(0) + 2 sum_l h(l) cos(2 pi f l): the kernel is symmetric
    out = np.empty(n_out, dtype=np.float32)
    for a in range(0, len(y), seg):
        lo = max(0, a - ctx)
        chunk = y[lo:a + seg + ctx].astype(np.float64)
        k = -(-(len(chunk) + 2 * half + 2) // down)
        n_fft, m_fft = down * k, up * k
        bins = min(n_fft, m_fft) // 2 + 1
        spec = _dft_bins(chunk, n_fft, bins) * (2.0 * _dft_bins(taps, n_fft, bins).real)
        spec[0] /= 2  # y[t] = (2 / m) Re sum_j c_j X_j exp(2 pi i j t / m), c_0 = c_{m/2} = 1/2
        if 2 * (bins - 1) == m_fft:
            spec[-1] /= 2
        first = (a - lo) * up // down  # both multiples of `down`: exact
        o0, o1 = a * up // down, min(n_out, -(-(a + seg) * up // down))
        res = _dft_bins(spec.conj(), m_fft, first + o1 - o0).real * (2.0 / n_fft)
        out[o0:o1] = res[first:]
    return out


def resample(y: np.ndarray, sr_in: int, sr_out: int, taps_per_side: int = DEFAULT_TAPS) -> np.ndarray:
    """Band-limited resampling with a Kaiser-windowed sinc (numpy only).

    ``(n,) float -> (ceil(n * sr_out / sr_in),) float32``. The cut-off (-6 dB) sits at 95 % of
    the lower Nyquist frequency; ``taps_per_side`` taps (at the lower rate) on each side of every
    output set how steep the transition is (training's speed perturbation uses 8, for speed).

    Where the time goes, and why this shape: the old per-output gather + einsum spent ~25 ms on
    3 s of 48 kHz audio building index arrays and gathering (48000 x 192 float64s), not
    multiplying. Here the kernel is tabulated once per ratio (:func:`_plan`, cached) and the work
    is a few float32 GEMMs on a strided, copy-free view of the input (~0.45 ms for 3 s of 48 or
    44.1 kHz, soxr HQ's time: BLAS at ~50 GMAC/s on 1.5x the useful multiply-adds). Ratios whose
    phase pattern would need a huge table (e.g. 383999 -> 16000 Hz) take :func:`_resample_fft`,
    after an integer decimation when the ratio is large (5 s at 383999 Hz: ~0.1 s; was 9 s).

    Quality, X kHz -> 16 kHz, 48 taps (sine sweeps in ``benchmarks/run.py --sections resample``;
    benchmarks/README.md): flat (< 0.001 dB) to 7.2 kHz, -0.9 dB at 7.4, -6 dB at 7.6, -20 dB at
    7.8 kHz; every tone that would alias (8.1 kHz up to the input Nyquist) is >= 89 dB down.
    soxr HQ: -2.9 dB at 7.6 kHz, >= 130 dB. In-band the two agree to ~1e-4 relative.
    """
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError("sample rates must be positive")
    y = np.asarray(y)
    if sr_in == sr_out:
        return y.astype(np.float32)
    geo = _geometry(sr_in, sr_out, taps_per_side)
    n_out = -(-len(y) * geo.up // geo.down)  # ceil(n * up / down) in integers: a float ratio can round up
    y = np.ascontiguousarray(y, dtype=np.float32)
    if n_out == 0:
        return np.zeros(0, dtype=np.float32)
    plan = _plan(geo)
    if plan is not None:
        return _resample_gemm(y, plan, n_out)
    factor = geo.down // (2 * geo.up)
    decimate = _plan(_geometry(factor, 1, taps_per_side)) if factor >= 2 else None
    if decimate is not None:
        # Odd ratio, large decimation (e.g. 383999 -> 16000 Hz): an integer decimation first
        # (a small GEMM plan; its cut-off, 95 % of a Nyquist >= sr_out, leaves the final band
        # alone), then the DFT path on `factor` times fewer samples (5 s: 0.8 s -> 0.1 s).
        y = _resample_gemm(y, decimate, -(-len(y) // factor))
        geo = _geometry(sr_in, sr_out * factor, taps_per_side)  # the remaining ratio
    return _resample_fft(y, geo, n_out)


def load_audio(src: PathOrFile, sample_rate: int, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Read a WAV and resample it to ``sample_rate``. ``-> (n_samples,) float32 mono``.
    ``max_seconds`` as for :func:`read_wav`; running out of memory is an :class:`AudioError`."""
    y, sr = read_wav(src, max_seconds)
    try:
        return resample(y, sr, sample_rate) if sr != sample_rate else y
    except MemoryError:
        raise AudioError(f"{_name(src)}: not enough memory to resample {len(y) / sr:.0f} s of audio") from None


def peak(y: np.ndarray) -> float:
    """``max |y|`` of a non-empty ``(n,)`` array without an ``|y|`` copy (two reductions)."""
    return max(float(y.max()), -float(y.min()))


def check_waveform(y: np.ndarray, sample_rate: int, name: str = "audio") -> None:
    """THE usability check for a clip, shared by the runtime (``predict``, ``listen``) and the
    training data path (``FeatureStore``, ``data info``): refuse audio a model cannot
    meaningfully classify or learn from. Raises :class:`AudioError` (too short, silent)."""
    if len(y) < MIN_DURATION_S * sample_rate:
        raise AudioError(f"{name}: too short ({len(y) / sample_rate:.3f} s; need at least {MIN_DURATION_S} s)")
    if peak(y) < SILENCE_PEAK:
        raise AudioError(f"{name}: silent (peak below -80 dBFS); nothing to classify")


def load_clip(src: PathOrFile, sample_rate: int, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """:func:`load_audio` + :func:`check_waveform`: a usable clip at ``sample_rate`` or
    :class:`AudioError` (unreadable, not a regular file, too long, too short, silent)."""
    y = load_audio(src, sample_rate, max_seconds)
    check_waveform(y, sample_rate, _name(src))
    return y


def to_pcm16(y: np.ndarray) -> np.ndarray:
    """The one float -> 16-bit PCM conversion (WAV files, the self-test vector): ``(n,) float`` in
    [-1, 1] -> ``(n,) '<i2'``, clipped to full scale and truncated toward zero."""
    return (np.clip(np.asarray(y, dtype=np.float64), -1.0, 1.0 - 1.0 / 32768) * 32768.0).astype("<i2")


def from_pcm16(pcm: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_pcm16`: ``(n,)`` int16 -> ``(n,) float32`` in [-1, 1)."""
    x = np.asarray(pcm).astype(np.float32)
    x *= np.float32(2.0 ** -15)  # exact, as dividing by 32768 is, without a second array
    return x


def write_wav(path: Union[str, os.PathLike[str]], y: np.ndarray, sample_rate: int) -> None:
    """Write ``(n_samples,)`` float audio as 16-bit PCM mono, atomically."""
    from .io import atomic_write_bytes

    data = to_pcm16(y).tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16,
                         WAVE_FORMAT_PCM, 1, sample_rate, sample_rate * 2, 2, 16, b"data", len(data))
    atomic_write_bytes(path, header + data)


def wav_bytes_to_array(data: bytes) -> Tuple[np.ndarray, int]:
    """:func:`read_wav` for bytes already in memory."""
    return read_wav(io.BytesIO(data))
