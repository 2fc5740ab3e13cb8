"""Audio chunk sources for :class:`~ser_edge.runtime.stream.Stream`: a WAV file or a microphone.

Both yield ``(n,) float32`` mono chunks at the requested sample rate.
"""

from __future__ import annotations

import os
import queue
import time
from typing import Iterator, Optional

import numpy as np

from .audio import load_audio
from .errors import SerEdgeError

MIC_INSTALL_HINT = "microphone input needs the sounddevice package: pip install 'ser-edge[mic]'"
#: A live device that delivers nothing for this long has stalled (unplugged, suspended).
MIC_STALL_S = 5.0


def wav_chunks(path: str, sample_rate: int, chunk_s: float = 0.1, realtime: bool = False) -> Iterator[np.ndarray]:
    """A WAV file in ``chunk_s`` pieces, resampled to ``sample_rate``; with ``realtime`` paced like
    a live source (sleeps so chunk k is yielded ``k * chunk_s`` after the start).

    The file is decoded whole (``read_wav`` caps files at 3 h); the *stream* keeps memory bounded.
    """
    if chunk_s <= 0:
        raise ValueError("chunk_s must be positive")
    y = load_audio(os.fspath(path), sample_rate)
    step = max(1, int(round(chunk_s * sample_rate)))
    start = time.monotonic()
    for k, i in enumerate(range(0, len(y), step)):
        if realtime:
            delay = start + k * step / sample_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield y[i:i + step]


def mic_chunks(sample_rate: int, chunk_s: float = 0.1, device: Optional[object] = None,
               max_chunks: Optional[int] = None) -> Iterator[np.ndarray]:
    """Live microphone audio via ``sounddevice`` (optional dependency; imported here only).
    Runs until the consumer stops iterating (or after ``max_chunks``)."""
    try:
        import sounddevice as sd
    except (ImportError, OSError):  # OSError: the package is there but PortAudio is not
        raise SerEdgeError(MIC_INSTALL_HINT) from None
    blocks: "queue.Queue[np.ndarray]" = queue.Queue()

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
