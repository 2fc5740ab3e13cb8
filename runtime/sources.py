"""Audio chunk sources for :class:`~ser_edge.runtime.stream.Stream`: a WAV file or a microphone.

Both yield ``(n,) float32`` mono chunks at the requested sample rate.
"""

from __future__ import annotations

import math
import os
import queue
import time
from typing import Iterator, Optional

import numpy as np

from .audio import iter_wav, resample
from .errors import SerEdgeError

MIC_INSTALL_HINT = "microphone input needs the sounddevice package: pip install 'ser-edge[mic]'"
#: A live device that delivers nothing for this long has stalled (unplugged, suspended).
MIC_STALL_S = 5.0


class BlockResampler:
    """Resamples a signal that arrives in blocks, with the same result as
    :func:`~ser_edge.runtime.audio.resample` on the whole signal, in memory bounded by one block.

    Each output sample of a windowed-sinc resampler depends on the input within its kernel's
    half-width only, so every call resamples the new input plus ``margin`` samples of context on
    each side (starting on a multiple of the rate ratio's denominator, so the output phases line
    up with the whole-signal grid) and keeps only the outputs whose context is complete; the end
    of the stream (``final=True``) is zero-padded exactly as the whole-signal call pads it.
    ``margin`` (input samples, default 50 ms and at least 1024) is far wider than the kernel
    (32 taps per side at the lower rate), so the block result equals the whole-signal one to
    float32 rounding (its GEMMs round differently on a shorter block; ~1e-7).
    """

    def __init__(self, sr_in: int, sr_out: int, margin: Optional[int] = None) -> None:
        if sr_in <= 0 or sr_out <= 0:
            raise ValueError("sample rates must be positive")
        g = math.gcd(int(sr_in), int(sr_out))
        self.sr_in, self.sr_out = int(sr_in), int(sr_out)
        self.up, self.down = self.sr_out // g, self.sr_in // g
        self.margin = int(margin) if margin is not None else max(1024, int(0.05 * sr_in))
        self._buf = np.zeros(0, dtype=np.float32)  # input from global index self._buf_start on
        self._buf_start = 0
        self._n_in = 0  # input samples received
        self._n_out = 0  # output samples produced

    def _block_start(self, n_out: int) -> int:
        """First input index of the block that produces output ``n_out`` (a multiple of ``down``)."""
        first = n_out * self.down // self.up - self.margin
        return max(0, (first // self.down) * self.down)

    def push(self, x: np.ndarray, final: bool = False) -> np.ndarray:
        """Add ``(n,) float32`` input; returns the outputs that are now final. ``(m,) float32``."""
        if len(x):
            self._buf = np.concatenate((self._buf, np.asarray(x, dtype=np.float32)))
            self._n_in += len(x)
        end = self._n_in
        if final:
            n_hi = -(-end * self.up // self.down)  # ceil, as resample() sizes its output
        else:  # outputs whose right context (margin input samples) has arrived
            n_hi = max(0, (end - self.margin) * self.up // self.down + 1) if end >= self.margin else 0
        if n_hi <= self._n_out:
            return np.zeros(0, dtype=np.float32)
        start = self._block_start(self._n_out)
        y = resample(self._buf[start - self._buf_start:], self.sr_in, self.sr_out)
        offset = start * self.up // self.down  # global index of y[0]
        out = y[self._n_out - offset:n_hi - offset]
        self._n_out = n_hi
        keep = self._block_start(n_hi)  # drop input no later output needs
        self._buf = self._buf[keep - self._buf_start:]
        self._buf_start = keep
        return out


def wav_chunks(path: str, sample_rate: int, chunk_s: float = 0.1, realtime: bool = False) -> Iterator[np.ndarray]:
    """A WAV file in ``chunk_s`` pieces (the last may be shorter), resampled to ``sample_rate``;
    with ``realtime`` paced like a live source (sleeps so chunk k is yielded ``k * chunk_s``
    after the start).

    The file is read from disk in blocks (:func:`~ser_edge.runtime.audio.iter_wav`) and
    resampled block by block (:class:`BlockResampler`, equal to resampling the whole file), so
    memory is a few blocks whatever the file's length. The header is checked before the first
    chunk (:class:`~ser_edge.runtime.audio.AudioError`, as ``read_wav`` raises it).
    """
    if not (math.isfinite(chunk_s) and chunk_s > 0):
        raise ValueError("chunk_s must be a positive number")
    step = max(1, int(round(chunk_s * sample_rate)))
    start = time.monotonic()
    k = 0
    for piece in _resampled_blocks(os.fspath(path), sample_rate, step):
        for i in range(0, len(piece), step):
            if realtime:
                delay = start + k * step / sample_rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield piece[i:i + step]
            k += 1


#: Input frames decoded per read (0.7 s at 48 kHz): the unit of memory of a streamed file.
READ_FRAMES = 32768


def _resampled_blocks(path: str, sample_rate: int, step: int) -> Iterator[np.ndarray]:
    """The file at ``sample_rate`` in pieces whose lengths are multiples of ``step`` except the
    last, ``(n,) float32`` each: chunk boundaries then fall where slicing the whole resampled
    file would put them."""
    resampler: Optional[BlockResampler] = None
    pending = np.zeros(0, dtype=np.float32)
    for block, rate in iter_wav(path, block_frames=READ_FRAMES):
        if rate != sample_rate and resampler is None:
            resampler = BlockResampler(rate, sample_rate)
        y = resampler.push(block) if resampler is not None else block
        pending = np.concatenate((pending, y)) if len(pending) else y
        whole = len(pending) - len(pending) % step
        if whole:
            yield pending[:whole]
            pending = pending[whole:]
    if resampler is not None:
        pending = np.concatenate((pending, resampler.push(np.zeros(0, np.float32), final=True)))
    if len(pending):
        yield pending


def mic_chunks(sample_rate: int, chunk_s: float = 0.1, device: Optional[object] = None,
               max_chunks: Optional[int] = None) -> Iterator[np.ndarray]:
    """Live microphone audio via ``sounddevice`` (optional dependency; imported here only).
    Runs until the consumer stops iterating (or after ``max_chunks``)."""
    try:
        import sounddevice as sd
    except (ImportError, OSError):  # OSError: the package is there but PortAudio is not
        raise SerEdgeError(MIC_INSTALL_HINT) from None
    blocks: queue.Queue[np.ndarray] = queue.Queue()

    def callback(indata, frames, time_info, status):  # runs on PortAudio's thread: copy and hand off
        blocks.put(np.array(indata[:, 0], dtype=np.float32))

    blocksize = max(1, int(round(chunk_s * sample_rate)))
    try:
        stream = sd.InputStream(samplerate=sample_rate, channels=1, dtype="float32", blocksize=blocksize,
                                device=device, callback=callback)
    except Exception as e:  # PortAudioError and friends: no device, unsupported rate
        raise SerEdgeError(f"cannot open the microphone: {e}") from None
    with stream:
        n = 0
        while max_chunks is None or n < max_chunks:
            try:
                yield blocks.get(timeout=MIC_STALL_S)
            except queue.Empty:
                raise SerEdgeError(f"the microphone delivered no audio for {MIC_STALL_S:.0f} s") from None
            n += 1
