"""Waveform in, emotion out: numpy MFCC + one backend, with the model's own feature config.

    >>> rec = Recognizer.load("model.int8.onnx")
    >>> rec.predict("clip.wav").label
    'happy'

The feature configuration and labels come from the model file (:class:`ModelMetadata`), never
from the caller, so the runtime cannot compute features that differ from training.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .audio import MAX_RATE, MIN_RATE, AudioError, load_audio, resample
from .backends import Backend, load_backend
from .errors import SerEdgeError
from .features import FeatureConfig, extract, pad_batch
from .metadata import ModelMetadata

#: Shortest clip worth classifying: 10 MFCC frames at the default 10 ms hop.
MIN_DURATION_S = 0.1
#: A clip whose peak stays below -80 dBFS (the MFCC's own ``top_db`` range) carries no signal
#: the features can see; classifying it would report a confident emotion for silence.
SILENCE_PEAK = 1e-4
#: File name of the model shipped with the package (see :func:`default_model_path`).
DEFAULT_MODEL_NAME = "ser-edge-ravdess.int8.onnx"

Audio = Union[str, "os.PathLike[str]", np.ndarray]


@dataclass(frozen=True)
class Prediction:
    """One classification. ``probabilities`` are softmax(logits) keyed by label (label order).

    ``timing`` keys: ``load_audio_ms``, ``features_ms``, ``model_ms``, ``total_ms``, ``audio_s``,
    ``rtf`` (processing time / audio duration; < 1 is faster than real time). Streams also set
    ``start_s``/``end_s`` (window position in the stream) and ``silent`` (window below
    :data:`SILENCE_PEAK`: probabilities are carried over, not recomputed).
    """

    label: str
    probabilities: Dict[str, float]
    logits: np.ndarray  # (n_classes,) float32
    timing: Dict[str, float] = field(default_factory=dict)
    start_s: Optional[float] = None
    end_s: Optional[float] = None
    silent: bool = False

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def to_dict(self) -> Dict[str, object]:
        """JSON-ready view."""
        d: Dict[str, object] = {
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            # a silent stream window was never classified: it has no logits
            "logits": None if self.silent else [round(float(v), 6) for v in self.logits],
            "timing": {k: round(v, 3) for k, v in self.timing.items()},
        }
        if self.start_s is not None:
            d.update(start_s=round(self.start_s, 3), end_s=round(self.end_s or 0.0, 3), silent=self.silent)
        return d


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis. ``(..., C) -> (..., C) float64``."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def check_waveform(y: np.ndarray, sample_rate: int, name: str = "audio") -> None:
    """Refuse audio the model cannot meaningfully classify. Raises :class:`AudioError`."""
    if len(y) < MIN_DURATION_S * sample_rate:
        raise AudioError(f"{name}: too short ({len(y) / sample_rate:.3f} s; need at least {MIN_DURATION_S} s)")
    if float(np.max(np.abs(y))) < SILENCE_PEAK:
        raise AudioError(f"{name}: silent (peak below -80 dBFS); nothing to classify")


def as_mono_float(y: np.ndarray) -> np.ndarray:
    """Accept ``(n,)`` or ``(n, channels)`` float or integer PCM. ``-> (n,) float32`` in [-1, 1]."""
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.signedinteger):
        # int16 from a microphone or a WAV library; wider ints scaled by their own range.
        y = y.astype(np.float64) / float(-np.iinfo(y.dtype).min)
    elif not np.issubdtype(y.dtype, np.floating):
        raise AudioError(f"expected float or signed integer samples, got dtype {y.dtype}")
    if y.ndim == 2:
        y = y.mean(axis=1)
    if y.ndim != 1:
        raise AudioError(f"expected a waveform of shape (n,) or (n, channels), got {y.shape}")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if not np.all(np.isfinite(y)):
        raise AudioError("waveform contains NaN or infinite samples")
    return y


class Recognizer:
    """A loaded model plus its feature pipeline. Thread-compatible, not thread-safe."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.metadata: ModelMetadata = backend.metadata
        self.feature_config: FeatureConfig = self.metadata.feature_config
        self.labels: List[str] = list(self.metadata.labels)

    @classmethod
    def load(cls, model_path: Union[str, "os.PathLike[str]"], backend: str = "auto", threads: int = 1) -> "Recognizer":
        """Open a model (``.onnx`` / ``.tflite`` / ``.npz``). Raises :class:`SerEdgeError` subclasses."""
        return cls(load_backend(os.fspath(model_path), backend=backend, threads=threads))

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # -- pieces ----------------------------------------------------------------------------
    def load_waveform(self, audio: Audio, sample_rate: Optional[int] = None) -> np.ndarray:
        """Path or array -> ``(n,) float32`` mono at the model's rate (validated)."""
        if isinstance(audio, (str, os.PathLike)):
            name = os.fspath(audio)
            y = load_audio(name, self.sample_rate)
        else:
            name = "audio"
            y = as_mono_float(audio)
            sr = self.sample_rate if sample_rate is None else int(sample_rate)
            if not MIN_RATE <= sr <= MAX_RATE:
                raise AudioError(f"unsupported sample rate {sr} Hz (expected {MIN_RATE}..{MAX_RATE})")
            if sr != self.sample_rate:
                y = resample(y, sr, self.sample_rate)
        check_waveform(y, self.sample_rate, name)
        return y

    def features(self, y: np.ndarray) -> np.ndarray:
        """``(n,) float32`` at the model rate -> ``(n_frames, n_mfcc) float32`` model input."""
        return extract(y, self.feature_config)

    def logits(self, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``(B, T, F) float32, (B,) int64 -> (B, C) float32``."""
        return self.backend.run(features, lengths)

    def _prediction(self, logits: np.ndarray, timing: Dict[str, float], **kw) -> Prediction:
        probs = softmax(logits)
        best = int(np.argmax(probs))
        return Prediction(self.labels[best], {lab: float(p) for lab, p in zip(self.labels, probs)},
                          np.asarray(logits, dtype=np.float32), timing, **kw)

    # -- public ----------------------------------------------------------------------------
    def predict(self, audio: Audio, sample_rate: Optional[int] = None) -> Prediction:
        """Classify one clip: a WAV path (any rate/format ``read_wav`` reads) or a waveform array
        (``sample_rate`` defaults to the model's). Raises :class:`AudioError` for bad audio."""
        t0 = time.perf_counter()
        y = self.load_waveform(audio, sample_rate)
        t1 = time.perf_counter()
        feats = self.features(y)
        t2 = time.perf_counter()
        logits = self.logits(feats[None], np.array([len(feats)], dtype=np.int64))[0]
        t3 = time.perf_counter()
        return self._prediction(logits, timing_dict(t0, t1, t2, t3, len(y) / self.sample_rate))

    def predict_batch(self, audios: Sequence[Audio], sample_rate: Optional[int] = None) -> List[Prediction]:
        """Classify several clips in one padded backend call. All must be valid (else AudioError);
        per-item timings share the batch's feature and model time, divided evenly."""
        if not audios:
            return []
        t0 = time.perf_counter()
        waves = [self.load_waveform(a, sample_rate) for a in audios]
        t1 = time.perf_counter()
        feats = [self.features(y) for y in waves]
        t2 = time.perf_counter()
        logits = self.logits(*pad_batch(feats))
        t3 = time.perf_counter()
        n = len(audios)
        t1s, t2s, t3s = t0 + (t1 - t0) / n, t0 + (t1 - t0 + t2 - t1) / n, t0 + (t3 - t0) / n
        return [self._prediction(lg, timing_dict(t0, t1s, t2s, t3s, len(y) / self.sample_rate))
                for lg, y in zip(logits, waves)]

    def stream(self, window_s: float = 2.0, hop_s: float = 0.5, smoothing: str = "ema",
               alpha: float = 0.5, history: int = 4) -> "Stream":
        """A :class:`~ser_edge.runtime.stream.Stream` over this model (see there)."""
        from .stream import Stream

        return Stream(self, window_s=window_s, hop_s=hop_s, smoothing=smoothing, alpha=alpha, history=history)

    def __repr__(self) -> str:
        return f"Recognizer({self.backend!r}, labels={self.labels})"


def timing_dict(t0: float, t1: float, t2: float, t3: float, audio_s: float) -> Dict[str, float]:
    """perf_counter stamps (start, audio loaded, features done, model done) -> timing dict (ms)."""
    total = t3 - t0
    return {
        "load_audio_ms": 1e3 * (t1 - t0),
        "features_ms": 1e3 * (t2 - t1),
        "model_ms": 1e3 * (t3 - t2),
        "total_ms": 1e3 * total,
        "audio_s": audio_s,
        "rtf": total / audio_s if audio_s > 0 else float("inf"),
    }


def default_model_path() -> str:
    """The model shipped with ser-edge (``ser-edge-ravdess.int8.onnx``), or :class:`SerEdgeError`.

    Looked up in ``$SER_EDGE_MODEL`` (a file), then ``models/`` beside the runtime package (a
    source checkout, where ``runtime/`` sits at the repository root) and ``models_data/`` inside
    the installed ``ser_edge`` package.
    """
    env = os.environ.get("SER_EDGE_MODEL")
    if env:
        if os.path.isfile(env):
            return env
        raise SerEdgeError(f"SER_EDGE_MODEL={env}: no such model file")
    here = Path(__file__).resolve().parent
    candidates = [here.parent / "models" / DEFAULT_MODEL_NAME, here.parent / "models_data" / DEFAULT_MODEL_NAME]
    spec = importlib.util.find_spec("ser_edge")  # locates the package without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(location) / "models_data" / DEFAULT_MODEL_NAME)
    for path in candidates:
        if path.is_file():
            return str(path)
    raise SerEdgeError(f"no default model found (looked for {DEFAULT_MODEL_NAME} in "
                       f"{', '.join(str(p.parent) for p in candidates)}); pass --model PATH")
