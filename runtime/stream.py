"""Streaming recognition over bounded buffers, in the cheapest mode the model allows.

Audio arrives in chunks of any size. Once ``window_s`` seconds have been pushed, the stream
classifies every ``hop_s`` seconds and emits a *smoothed* prediction, so a label does not
flicker from hop to hop. Memory is one window of samples, one window of per-frame features and
at most ``history`` probability vectors, however long the stream runs.

Modes (:data:`MODES`; ``"auto"`` picks the first the model and hop allow, :attr:`Stream.mode_reason`
says why):

``stateful``
    Unidirectional LSTM (``arch "lstm"``) with a stateful backend (the numpy backend, or a
    ``*.stream.onnx`` graph beside an ONNX model) and causal features (no deltas, no gain
    normalisation). Each frame's features are computed once and fed once to the LSTM, whose
    state is carried between hops, so a hop costs work in proportion to the hop: one backend
    call over the hop's frames, and one over the 2-3 frames not yet complete (the last
    ``n_fft / 2`` samples), zero-padded as the window mode pads a window's end, from a copy of
    the state (a model that reads its last step weighs them heavily). A frame's ``top_db``
    clamp is relative to the loudest frame of the window ending at that hop (the window mode's
    loudest frame of the window lies partly in the future).

    *Semantics* (``states``): an LSTM state carried forever would see the whole stream.

    * ``states=1`` (default): one state, carried from the stream start and restarted from zero
      every :data:`RESET_WINDOWS` windows (before the frames of hops 1 + P, 1 + 2P, ...,
      ``P = RESET_WINDOWS * E``, ``E = ceil(window / hop)``). A prediction covers the audio
      since the last restart: from one hop (just after a restart) to 8 windows.
    * ``states=2``: two staggered states, both fed each hop's frames (one batch-2 call); every
      E hops one of them restarts, in turn (before hops 1, 1 + E, 1 + 2E, ...), and each
      prediction comes from the state with the shortest context that still covers a window:
      ``[window, window + (E - 1) * hop]`` of the latest audio, exactly one window every E hops.

    ``start_s`` of a prediction is where its state's context begins; ``end_s`` (and the number
    of predictions) are the window mode's. Labels agree with the window mode's on 98-99 % of
    hops of real speech (tests/test_stream_modes.py; the contexts differ by design).
``incremental``
    Any model. Frames computed once (:class:`~ser_edge.runtime.frontend.FrameCache`), each
    window's model input rebuilt from them (equal to the window mode's features to float
    rounding), the model run over the window.
``window``
    Each window featurised on its own with :func:`~ser_edge.runtime.features.extract`. Used when
    the hop is not a multiple of the model's frame hop (frames of successive windows would not
    line up), and for :meth:`Stream.flush`'s last, unaligned window in the other modes.

In every mode the ``top_db`` clamp is relative to a loudest frame near the window, the same
per-clip behaviour the model was trained with (each training clip is clamped on its own).

A window below -80 dBFS, or rejected by the optional voice-activity gate
(:class:`~ser_edge.runtime.vad.SpeechGate`), is not classified: ``silent`` is set ("no speech")
and the smoothed probabilities are carried over (uniform before any speech).
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import TYPE_CHECKING, Deque, Dict, List, Optional, Protocol, Tuple

import numpy as np

from .audio import peak
from .frontend import FrameCache, assemble, causal_support, frames_per_side, window_features
from .metadata import MetadataError
from .recognizer import MIN_DURATION_S, SILENCE_PEAK, Prediction, as_mono_float, make_prediction, softmax, timing_dict
from .vad import SpeechGate

if TYPE_CHECKING:
    from .recognizer import Recognizer


State = Tuple[np.ndarray, np.ndarray]


class Stepper(Protocol):
    """A backend's stateful LSTM (``NumpyStepper``, ``OnnxStepper``): state ``(h, c)``, each
    ``(num_layers, batch, hidden) float32``."""

    def zero_state(self, batch: int = 1) -> State: ...

    def step(self, x: np.ndarray, state: State) -> Tuple[np.ndarray, State]: ...

SMOOTHING = ("ema", "mean", "none")
MODES = ("auto", "stateful", "incremental", "window")
#: Longest window accepted (s): far beyond any model's training clips, and a bound on memory.
MAX_WINDOW_S = 60.0
MAX_HISTORY = 1000
#: A single stateful state restarts from zero every this many windows (bounded history).
RESET_WINDOWS = 8


class Smoother:
    """Smooths successive probability vectors ``(C,)``.

    * ``ema``: exponential moving average, ``s = alpha * p + (1 - alpha) * s``
    * ``mean``: mean of the last ``history`` vectors
    * ``none``: pass through
    """

    def __init__(self, method: str = "ema", alpha: float = 0.5, history: int = 4) -> None:
        if method not in SMOOTHING:
            raise ValueError(f"smoothing must be one of {SMOOTHING}, got {method!r}")
        if not (isinstance(alpha, (int, float)) and 0.0 < alpha <= 1.0):  # NaN fails too
            raise ValueError("alpha must be in (0, 1]")
        if isinstance(history, bool) or not isinstance(history, (int, np.integer)) or not 1 <= history <= MAX_HISTORY:
            raise ValueError(f"history must be an integer in [1, {MAX_HISTORY}]")
        self.method, self.alpha = method, float(alpha)
        self.recent: Deque[np.ndarray] = deque(maxlen=history if method == "mean" else 1)
        self.state: Optional[np.ndarray] = None

    def update(self, probs: np.ndarray) -> np.ndarray:
        probs = np.asarray(probs, dtype=np.float64)
        if self.method == "ema" and self.state is not None:
            self.state = self.alpha * probs + (1.0 - self.alpha) * self.state
        elif self.method == "mean":
            self.recent.append(probs)
            self.state = np.mean(self.recent, axis=0)
        else:
            self.state = probs
        return self.state

    def reset(self) -> None:
        self.recent.clear()
        self.state = None


class Stream:
    """``push(chunk) -> [Prediction, ...]`` over fixed-size buffers; ``flush()`` for the tail.

    Chunks are ``(n,)`` or ``(n, channels)`` float in [-1, 1] or int16, at the model's sample
    rate. The k-th prediction ends at sample ``window + k * hop`` of the stream (``end_s``); in
    the window and incremental modes it covers ``[k * hop, k * hop + window)`` (``start_s``), in
    the stateful mode it starts where its state restarted (see the module docstring).
    ``mode``: one of :data:`MODES`; ``gate``: a :class:`SpeechGate` to report windows without
    speech as ``silent`` (None: only windows below -80 dBFS are).
    """

    def __init__(self, recognizer: Recognizer, window_s: float = 2.0, hop_s: float = 0.5,
                 smoothing: str = "ema", alpha: float = 0.5, history: int = 4, mode: str = "auto",
                 gate: Optional[SpeechGate] = None, states: int = 1) -> None:
        self.recognizer = recognizer
        self.cfg = cfg = recognizer.feature_config
        self.sample_rate = sr = recognizer.sample_rate
        for name, value in (("window", window_s), ("hop", hop_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
        if not MIN_DURATION_S <= window_s <= MAX_WINDOW_S:
            raise ValueError(f"window must be between {MIN_DURATION_S} and {MAX_WINDOW_S:g} s")
        self.window = int(round(window_s * sr))
        self.hop = int(round(hop_s * sr))
        if not 0 < self.hop <= self.window:
            raise ValueError("need 0 < hop <= window")
        asked, note = self.hop, ""
        if mode == "auto" and self.hop % cfg.hop_length:
            # Align the hop with the model's frames (e.g. 0.5 s -> 0.512 s at a 32 ms frame hop):
            # otherwise no frame could be reused between windows and every hop would pay for a
            # whole window's features.
            aligned = max(cfg.hop_length, int(round(self.hop / cfg.hop_length)) * cfg.hop_length)
            if aligned <= self.window:
                self.hop = aligned
                note = f"; hop {asked / sr:g} s rounded to {aligned / sr:g} s to align with the model's frames"
        self.smoother = Smoother(smoothing, alpha, history)
        self.gate = gate
        if states not in (1, 2):
            raise ValueError(f"states must be 1 or 2, got {states!r}")
        self.states = states
        self.mode, self.mode_reason, self._stepper = choose_mode(recognizer, self.hop, mode)
        self.mode_reason += note
        self._ring = np.zeros(self.window, dtype=np.float32)
        self._cache: Optional[FrameCache] = None
        if self.mode != "window":
            self._cache = FrameCache(cfg, cfg.n_frames(self.window) + 2 * frames_per_side(cfg) + 2)
            self._frame_max = np.zeros(self._cache.capacity)  # loudest mel dB per cached frame
        self.reset()

    def reset(self) -> None:
        """Forget all audio, frames, LSTM state and smoothing (buffers are reused, not reallocated)."""
        self._ring[:] = 0.0
        self._pos = 0  # next write index in the ring
        self._filled = 0  # valid samples in the ring, <= window
        self.total = 0  # samples pushed since the start
        self._next_emit = self.window  # stream position (samples) of the next prediction
        self._last_emit = 0
        self.smoother.reset()
        if self._cache is not None:
            self._cache.reset()
        if self._stepper is not None:
            self._state = self._stepper.zero_state(self.states)  # the states on the batch axis
            self._logits = np.zeros((self.states, len(self.recognizer.labels)), dtype=np.float32)
            self._batches = 0  # frame batches fed (one per hop)
            self._restart_at = [0, 0]  # stream sample where each state's context begins
            self._batch_start = 0  # stream sample where the next batch's audio begins
            per_window = -(-self.window // self.hop)  # E: hops per window
            # batches between restarts: one state restarts every window, in turn; a single state
            # every RESET_WINDOWS windows
            self._period = per_window if self.states == 2 else RESET_WINDOWS * per_window

    @property
    def buffer_nbytes(self) -> int:
        """Bytes held for audio and per-frame features: constant."""
        n = self._ring.nbytes
        if self._cache is not None:
            n += self._cache.mel.nbytes + self._cache.chroma.nbytes + self._frame_max.nbytes
        return n

    def push(self, chunk: np.ndarray) -> List[Prediction]:
        """Append audio; returns the predictions whose hop boundary the chunk crossed (0, 1 or more)."""
        y = as_mono_float(chunk)
        out: List[Prediction] = []
        i = 0
        while i < len(y):
            n = min(len(y) - i, self._next_emit - self.total)
            self._write(y[i:i + n])
            i += n
            if self.total == self._next_emit:
                out.append(self._emit())
                self._next_emit += self.hop
        return out

    def flush(self) -> List[Prediction]:
        """Classify the audio pushed since the last prediction, if any (the latest window, or all
        of a stream shorter than one window; nothing if that is under the minimum duration)."""
        if self.total == self._last_emit or self._filled < MIN_DURATION_S * self.sample_rate:
            return []
        return [self._emit(final=True)]

    def recent_audio(self) -> np.ndarray:
        """The buffered audio (the last window, or all of a shorter stream). ``(n,) float32``."""
        return self._window()

    # -- internals ---------------------------------------------------------------------------
    def _write(self, x: np.ndarray) -> None:
        """Copy ``x`` (at most one window long) into the ring at the write position."""
        first = min(len(x), self.window - self._pos)
        self._ring[self._pos:self._pos + first] = x[:first]
        self._ring[:len(x) - first] = x[first:]
        self._pos = (self._pos + len(x)) % self.window
        self._filled = min(self.window, self._filled + len(x))
        self.total += len(x)
        if self._cache is not None:
            self._cache.push(x)

    def _window(self, n: Optional[int] = None) -> np.ndarray:
        """The last ``n`` (default: all) buffered samples in time order. ``(n,) float32``."""
        n = self._filled if n is None else min(n, self._filled)
        if self._filled < self.window:
            return self._ring[self._filled - n:self._filled].copy()  # not wrapped yet: starts at index 0
        if n <= self._pos:
            return self._ring[self._pos - n:self._pos].copy()
        return np.concatenate((self._ring[self.window - (n - self._pos):], self._ring[:self._pos]))

    def _emit(self, final: bool = False) -> Prediction:
        t0 = time.perf_counter()
        rec = self.recognizer
        stateful = self._stepper is not None
        # the stateful mode needs no window of audio (its frames are cached), unless the gate looks
        y = self._window() if final or not stateful or self.gate is not None else np.zeros(0, dtype=np.float32)
        start = self.total - self._filled
        self._last_emit = self.total
        if self._cache is not None and stateful:  # every hop, speech or not: frames and state stay current
            f0, f1, edge_mel, edge_chroma = self._frames.update_with_edge()
            self._advance(f0, f1)
            self._batch_start = self.total
        elif self._cache is not None:
            self._cache.update()
        span = dict(start_s=start / self.sample_rate, end_s=self.total / self.sample_rate)
        silent = peak(self._ring[:self._filled]) < SILENCE_PEAK  # order does not matter
        if silent or (self.gate is not None and not self.gate.is_speech(y, self.sample_rate)):
            n = len(rec.labels)
            probs = self.smoother.state if self.smoother.state is not None else np.full(n, 1.0 / n)
            logits = np.full(n, np.nan, dtype=np.float32)  # nothing was classified
            return make_prediction(rec.labels, probs, logits, self._timing(t0, t0, t0), silent=True, **span)
        if stateful:
            i = self._emitting_state()
            span["start_s"] = self._restart_at[i] / self.sample_rate
            logits, t1 = self._edge_logits(edge_mel, edge_chroma, i)
            probs = self.smoother.update(softmax(logits))
            return make_prediction(rec.labels, probs, logits, self._timing(t0, t1, time.perf_counter()), **span)
        if self.mode == "incremental" and not final and start % self.cfg.hop_length == 0:
            feats = window_features(self._frames, y, start, self.cfg, rec.speaker_stats)
        else:
            feats = rec.features(y)
        return rec.classify_features(feats, self._filled / self.sample_rate, t0, t0,
                                     rtf_base_s=self.hop / self.sample_rate, smooth=self.smoother.update, **span)

    # -- stateful mode -----------------------------------------------------------------------
    @property
    def _frames(self) -> FrameCache:
        assert self._cache is not None, "incremental and stateful modes only"
        return self._cache

    @property
    def _steps(self) -> Stepper:
        assert self._stepper is not None, "stateful mode only"
        return self._stepper

    def _causal(self, mel: np.ndarray, chroma: np.ndarray, f1: int) -> np.ndarray:
        """Model input of frames whose mel power is ``mel``, clamped relative to the loudest of the
        window's worth of frames ending at frame ``f1 - 1`` (cached) and these. ``(n, F) float32``."""
        lo = max(0, f1 - self.cfg.n_frames(self.window), self._frames.n_frames - self._frames.capacity)
        hi = min(f1, self._frames.n_frames)
        peak = float(np.max(10.0 * np.log10(np.maximum(mel.max(), 1e-10))))
        if hi > lo:
            peak = max(peak, float(self._frame_max[np.arange(lo, hi) % self._frames.capacity].max()))
        return assemble(mel, chroma, self.cfg, clamp_ref=peak, stats=self.recognizer.speaker_stats)

    def _advance(self, f0: int, f1: int) -> None:
        """Feed frames ``[f0, f1)`` (this hop's) to both states in one batch-2 step, first
        restarting one of them from zero when its turn has come (see the module docstring)."""
        j, e = self._batches, self._period
        h, c = self._state
        if j >= (1 if self.states == 2 else 2) and (j - 1) % e == 0:  # batches 1, 1 + P, ...: states 1, 0, 1, ...
            i = ((j - 1) // e + 1) % 2 if self.states == 2 else 0
            h[:, i], c[:, i] = 0.0, 0.0
            self._restart_at[i] = self._batch_start
        self._batches += 1
        if f1 <= f0:
            return
        cap = self._frames.capacity
        mel, chroma = self._frames.take(f0, f1)
        self._frame_max[np.arange(f0, f1) % cap] = 10.0 * np.log10(np.maximum(mel.max(axis=1), 1e-10))
        feats = self._causal(mel, chroma, f1)
        x = np.ascontiguousarray(np.broadcast_to(feats, (self.states,) + feats.shape))
        self._logits, self._state = self._steps.step(x, (h, c))

    def _emitting_state(self) -> int:
        """The state whose context is the shortest that still covers a window (the older one for
        a stream shorter than a window; ties: state 0)."""
        if self.states == 1:
            return 0
        ages = [self.total - start for start in self._restart_at]
        full = [i for i in (0, 1) if ages[i] >= self.window]
        return min(full, key=lambda i: (ages[i], i)) if full else max((0, 1), key=lambda i: (ages[i], -i))

    def _edge_logits(self, mel: np.ndarray, chroma: np.ndarray, i: int) -> Tuple[np.ndarray, float]:
        """Logits of state ``i`` after the frames not yet complete (their mel power and chroma
        from :meth:`FrameCache.update_with_edge`, zero-padded at the end of the audio as
        :func:`~ser_edge.runtime.features.extract` pads a window's or a clip's end); the state
        itself is not advanced over them: they are computed properly once their audio has
        arrived. (A model that reads its last step weighs these frames heavily: without them
        the labels agree with the window mode's on 64 % of hops instead of 99 %.)
        -> ``(logits (C,), perf_counter after the features)``."""
        if not len(mel):
            return self._logits[i], time.perf_counter()
        feats = self._causal(mel, chroma, self._frames.n_frames)
        t1 = time.perf_counter()
        state = (self._state[0][:, i:i + 1], self._state[1][:, i:i + 1])
        logits, _ = self._steps.step(feats[None], state)
        return logits[0], t1

    def _timing(self, t0: float, t1: float, t2: float) -> Dict[str, float]:
        """:func:`~ser_edge.runtime.recognizer.timing_dict` of a hop (start, features done, model
        done): no audio loading, ``rtf`` = compute time per hop (a stream keeps up with live
        audio while it stays below 1)."""
        return timing_dict(t0, t0, t1, t2, self._filled / self.sample_rate, self.hop / self.sample_rate)


def choose_mode(recognizer: Recognizer, hop: int, requested: str = "auto") -> Tuple[str, str, Optional[Stepper]]:
    """The cheapest stream mode for ``recognizer`` at a hop of ``hop`` samples, or the
    ``requested`` one. -> ``(mode, why, stepper or None)``. Raises ValueError when the requested
    mode is impossible (the message says why)."""
    if requested not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {requested!r}")
    cfg = recognizer.feature_config
    if requested == "window":
        return "window", "requested: each window featurised and classified whole", None
    if hop % cfg.hop_length:
        why = (f"the hop ({hop} samples) is not a multiple of the model's frame hop ({cfg.hop_length}), "
               "so frames of successive windows do not line up")
        if requested != "auto":
            raise ValueError(f"{requested} mode impossible: {why}")
        return "window", why, None
    if requested == "incremental":
        return "incremental", "requested: features once per frame, the model per window", None
    stepper, why_not = _stepper(recognizer)
    if stepper is not None:
        return "stateful", "unidirectional LSTM: features once per frame, LSTM state carried between hops", stepper
    if requested == "stateful":
        raise ValueError(f"stateful mode impossible: {why_not}")
    return "incremental", f"features once per frame, the model per window (not stateful: {why_not})", None


def _stepper(recognizer: Recognizer) -> Tuple[Optional[Stepper], str]:
    """The backend's stateful stepper, or ``(None, why not)``."""
    why = causal_support(recognizer.feature_config)
    if why is not None:
        return None, f"the model's features are not causal: {why}"
    make = getattr(recognizer.backend, "stepper", None)
    if make is None:
        return None, f"the {recognizer.backend_name} backend has no stateful stepping"
    try:
        return make(), ""
    except MetadataError as e:
        return None, str(e)
