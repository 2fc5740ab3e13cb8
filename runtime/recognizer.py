"""Waveform in, emotion out: numpy features + one backend, with the model's own feature config.

    >>> rec = Recognizer.load("model.int8.onnx")
    >>> rec.predict("clip.wav").label
    'happy'

The stages of :meth:`Recognizer.predict`, and where each lives:

1. model file -> :func:`~ser_edge.runtime.backends.load_backend` (``runtime/backends/``: the
   engine by file type) + :class:`~ser_edge.runtime.metadata.ModelMetadata` (feature config,
   labels, self-test vector, read from the file);
2. audio -> :meth:`Recognizer.load_waveform` (``runtime/audio.py``: ``read_wav``, ``resample`` to
   the model's rate, ``check_waveform`` refuses too-short or silent clips);
3. features -> :meth:`Recognizer.features` = ``runtime/features.py``'s ``extract(y, cfg)``, the
   same function training used;
4. model + result -> :meth:`Recognizer.classify_features` (backend logits, softmax,
   :func:`make_prediction`, :func:`timing_dict`): the one inference step, which streams
   (``runtime/stream.py``) and the self-test (``runtime/selftest.py``) share.

The feature configuration and labels come from the model file, never from the caller, so the
runtime cannot compute features that differ from training.
"""

from __future__ import annotations

import importlib.util
import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .audio import MAX_RATE, MIN_RATE, AudioError, AudioTooLongError, check_waveform, load_audio, resample
from .audio import MIN_DURATION_S as MIN_DURATION_S  # re-exported (stream.py, callers)
from .audio import SILENCE_PEAK as SILENCE_PEAK  # re-exported
from .backends import Backend, load_backend
from .errors import SerEdgeError
from .features import FeatureConfig, RunningStats, normalise, pad_batch, raw_features
from .metadata import ModelMetadata

if TYPE_CHECKING:  # stream.py imports this module
    from .stream import Stream

#: Longest clip :meth:`Recognizer.predict` classifies whole. Its peak memory grows with the clip
#: (waveform, STFT, features); at this length it stays under 300 MiB for any WAV format and any
#: model that passes :func:`~ser_edge.runtime.metadata.check_feature_costs`. Longer recordings
#: go through :meth:`Recognizer.stream` (``ser-edge listen --wav``), whose memory is one window.
MAX_PREDICT_S = 60.0
#: Fewest feature frames :meth:`Recognizer.adapt` accepts (about 3 s at a 32 ms hop): statistics of
#: less audio describe the sentence more than the speaker.
MIN_ADAPT_FRAMES = 100
#: Most inference threads a model is opened with: engines start one OS thread per requested thread
#: (2000 started ~1700), and beyond the cores no model this size gets faster. A fixed bound, not
#: the core count, so a command line means the same on every machine.
MAX_THREADS = 64
#: File name of the model shipped with the package (see :func:`default_model_path`).
DEFAULT_MODEL_NAME = "ser-edge-ravdess.int8.onnx"
#: The shipped model each backend runs (see :func:`default_model_path`).
SHIPPED_MODELS = {"onnxruntime": DEFAULT_MODEL_NAME, "litert": "ser-edge-ravdess.int8.tflite",
                  "numpy": "ser-edge-ravdess.npz"}

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


def too_long_error(name: str, seconds: float) -> AudioError:
    """The one message for a clip over :data:`MAX_PREDICT_S`: it says what to use instead."""
    return AudioError(f"{name}: {seconds:.1f} s is longer than predict's limit of {MAX_PREDICT_S:g} s; "
                      f"use `ser-edge listen --wav {name}` (Recognizer.stream) for long recordings")


def as_mono_float(y: np.ndarray) -> np.ndarray:
    """Accept ``(n,)`` or ``(n, channels)`` float or integer PCM. ``-> (n,) float32`` in [-1, 1]."""
    y = np.asarray(y)
    if y.dtype == np.float32 and y.ndim == 1 and y.flags.c_contiguous:  # a stream's usual chunk: checks only
        if not np.isfinite(y).all():
            raise AudioError("waveform contains NaN or infinite samples")
        return y
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
        #: ``(mean, std)`` of the current speaker's raw features (``adapt``), or None.
        self.speaker_stats: Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]] = None

    @classmethod
    def load(cls, model_path: Union[str, os.PathLike[str]], backend: str = "auto", threads: int = 1) -> Recognizer:
        """Open a model (``.onnx`` / ``.tflite`` / ``.npz``) with ``threads`` in 1..:data:`MAX_THREADS`.
        Raises :class:`SerEdgeError` subclasses."""
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or not 1 <= threads <= MAX_THREADS:
            raise SerEdgeError(f"threads must be an integer in 1..{MAX_THREADS}, got {threads!r}")
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
            try:  # the duration comes from the header: a long file is refused before it is read
                y = load_audio(name, self.sample_rate, max_seconds=MAX_PREDICT_S)
            except AudioTooLongError as e:
                raise too_long_error(name, e.seconds) from None
        else:
            name = "audio"
            y = as_mono_float(audio)
            sr = self.sample_rate if sample_rate is None else int(sample_rate)
            if not MIN_RATE <= sr <= MAX_RATE:
                raise AudioError(f"unsupported sample rate {sr} Hz (expected {MIN_RATE}..{MAX_RATE})")
            if len(y) > MAX_PREDICT_S * sr:
                raise too_long_error(name, len(y) / sr)
            if sr != self.sample_rate:
                y = resample(y, sr, self.sample_rate)
        check_waveform(y, self.sample_rate, name)
        return y

    def features(self, y: np.ndarray) -> np.ndarray:
        """``(n,) float32`` at the model rate -> ``(n_frames, n_features) float32`` model input
        (normalised with the adapted speaker's statistics after :meth:`adapt`)."""
        return normalise(raw_features(y, self.feature_config), self.feature_config, self.speaker_stats)

    def adapt(self, audios: Sequence[Audio], sample_rate: Optional[int] = None) -> None:
        """Speaker adaptation without labels, for a model trained with ``speaker_norm``: the
        mean/std of the features of ``audios`` (the same speaker's clips, any emotions, a few
        seconds or more in all) replace the training population's until :meth:`reset_adaptation`.
        Raises :class:`SerEdgeError` for a model not trained for it, :class:`AudioError` for bad audio."""
        if not self.feature_config.speaker_norm:
            raise SerEdgeError("this model was not trained with per-speaker normalisation (speaker_norm); "
                               "adapting it would feed it features unlike its training data")
        stats = RunningStats()
        for a in audios:
            stats.update(raw_features(self.load_waveform(a, sample_rate), self.feature_config))
        if stats.n < MIN_ADAPT_FRAMES:
            raise AudioError(f"speaker adaptation needs at least {MIN_ADAPT_FRAMES} frames of audio, got {stats.n}")
        self.speaker_stats = stats.result()

    def reset_adaptation(self) -> None:
        """Back to the training population's statistics."""
        self.speaker_stats = None

    def logits(self, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``(B, T, F) float32, (B,) int64 -> (B, C) float32``."""
        return self.backend.run(features, lengths)

    def classify_features(self, feats: np.ndarray, audio_s: float, t_start: float, t_loaded: float,
                          rtf_base_s: Optional[float] = None,
                          smooth: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                          **span: float) -> Prediction:
        """The one inference step shared by :meth:`predict`, streams and the self-test: one clip's
        model input ``(n_frames, n_features) float32`` -> backend logits ``(C,)`` -> softmax ->
        :class:`Prediction`.

        ``audio_s``: the clip's duration; ``t_start`` / ``t_loaded``: ``time.perf_counter()`` when
        the caller began on the clip and when its waveform was ready (features ran from then until
        this call), so ``timing`` covers the whole clip (:func:`timing_dict`); ``rtf_base_s``: the
        real-time factor's denominator (default ``audio_s``; a stream's hop); ``smooth``: maps the
        softmax to the reported probabilities and label (a stream's smoother); ``span``:
        ``start_s`` / ``end_s`` of a stream window.
        """
        t_features = time.perf_counter()
        logits = self.logits(feats[None], np.array([len(feats)], dtype=np.int64))[0]
        t_model = time.perf_counter()
        probs = softmax(logits) if smooth is None else smooth(softmax(logits))
        timing = timing_dict(t_start, t_loaded, t_features, t_model, audio_s, rtf_base_s)
        return make_prediction(self.labels, probs, logits, timing, **span)

    # -- public ----------------------------------------------------------------------------
    def predict(self, audio: Audio, sample_rate: Optional[int] = None) -> Prediction:
        """Classify one clip: a WAV path (any rate/format ``read_wav`` reads) or a waveform array
        (``sample_rate`` defaults to the model's). Raises :class:`AudioError` for bad audio and for
        clips over :data:`MAX_PREDICT_S` (checked from a file's header before reading it): classify
        long recordings with :meth:`stream`, whose memory is one window."""
        t0 = time.perf_counter()
        y = self.load_waveform(audio, sample_rate)
        t1 = time.perf_counter()
        return self.classify_features(self.features(y), len(y) / self.sample_rate, t0, t1)

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
        return [make_prediction(self.labels, softmax(lg), lg, timing_dict(t0, t1s, t2s, t3s, len(y) / self.sample_rate))
                for lg, y in zip(logits, waves)]

    def stream(self, window_s: float = 2.0, hop_s: float = 0.5, smoothing: str = "ema",
               alpha: float = 0.5, history: int = 4, **options) -> Stream:
        """A :class:`~ser_edge.runtime.stream.Stream` over this model; ``options`` (``mode``: the
        cheapest the model allows by default; ``gate``: a voice-activity gate; ``states``) as there."""
        from .stream import Stream

        return Stream(self, window_s=window_s, hop_s=hop_s, smoothing=smoothing, alpha=alpha, history=history,
                      **options)

    def __repr__(self) -> str:
        return f"Recognizer({self.backend!r}, labels={self.labels})"


def make_prediction(labels: Sequence[str], probs: np.ndarray, logits: np.ndarray, timing: Dict[str, float],
                    **kw) -> Prediction:
    """The one way a :class:`Prediction` is built: label = argmax of ``probs`` ``(C,)``; ``logits``
    ``(C,)`` as the model gave them (NaN for a silent stream window); ``kw``: ``start_s``,
    ``end_s``, ``silent``."""
    best = int(np.argmax(probs))
    return Prediction(labels[best], {lab: float(p) for lab, p in zip(labels, probs)},
                      np.asarray(logits, dtype=np.float32), timing, **kw)


def timing_dict(t0: float, t1: float, t2: float, t3: float, audio_s: float,
                rtf_base_s: Optional[float] = None) -> Dict[str, float]:
    """perf_counter stamps (start, audio loaded, features done, model done) -> timing dict (ms).
    ``rtf`` = processing time / ``rtf_base_s`` (default ``audio_s``): a clip is classified faster
    than real time below 1; a stream keeps up with live audio while compute per hop stays below 1."""
    total = t3 - t0
    base = audio_s if rtf_base_s is None else rtf_base_s
    return {
        "load_audio_ms": 1e3 * (t1 - t0),
        "features_ms": 1e3 * (t2 - t1),
        "model_ms": 1e3 * (t3 - t2),
        "total_ms": 1e3 * total,
        "audio_s": audio_s,
        "rtf": total / base if base > 0 else float("inf"),
    }


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (cheap)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as missing
        return False


def default_backend() -> str:
    """``onnxruntime`` where it is installed, else ``numpy`` (the pure-numpy LSTM: 32-bit Pi OS
    has no onnxruntime wheel, and the numpy backend needs no engine at all)."""
    return "onnxruntime" if is_installed("onnxruntime") else "numpy"


def default_model_path(backend: str = "auto") -> str:
    """The shipped model that ``backend`` runs (:data:`SHIPPED_MODELS`; ``"auto"`` =
    :func:`default_backend`: ``ser-edge-ravdess.int8.onnx``, or ``ser-edge-ravdess.npz`` where
    onnxruntime is missing), or :class:`SerEdgeError` saying what to install or pass.

    ``$SER_EDGE_MODEL`` (a file) overrides it; otherwise it is looked up in ``models/`` beside the
    runtime package (a source checkout, where ``runtime/`` sits at the repository root) and
    ``models_data/`` inside the installed ``ser_edge`` package.
    """
    env = os.environ.get("SER_EDGE_MODEL")
    if env:
        if os.path.isfile(env):
            return env
        raise SerEdgeError(f"SER_EDGE_MODEL={env}: no such model file")
    chosen = default_backend() if backend == "auto" else backend
    if chosen not in SHIPPED_MODELS:
        raise SerEdgeError(f"unknown backend {backend!r}; choose auto or one of {sorted(SHIPPED_MODELS)}")
    name = SHIPPED_MODELS[chosen]
    here = Path(__file__).resolve().parent
    dirs = [here.parent / "models", here.parent / "models_data"]
    spec = importlib.util.find_spec("ser_edge")  # locates the package without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        dirs.append(Path(location) / "models_data")
    for d in dirs:
        if (d / name).is_file():
            return str(d / name)
    why = "onnxruntime is not installed, and " if backend == "auto" and chosen == "numpy" else ""
    raise SerEdgeError(f"{why}the shipped model {name} was not found (looked in {', '.join(map(str, dirs))}); "
                       f"pass --model PATH" + (" or pip install onnxruntime" if why else ""))
