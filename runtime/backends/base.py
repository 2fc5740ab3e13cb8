"""The interface every inference engine implements. numpy + stdlib only.

A backend wraps one model file and its engine::

    backend = SomeBackend(path: str, threads: int = 1)   # raises MetadataError / SerEdgeError
    backend.name                                          # "onnxruntime" | "litert" | "numpy"
    backend.metadata                                      # ModelMetadata read from the file
    backend.run(features, lengths) -> logits

* ``features``: ``(batch, time, n_features) float32`` (``FeatureConfig.n_features``), zero-padded
  at the end of the time axis
* ``lengths``: ``(batch,) int64``, valid frames per item (``1 <= lengths <= time``)
* ``logits``: ``(batch, n_classes) float32``, ``n_classes == len(metadata.labels)``

Constructors must turn every failure to open or understand the file (missing, random bytes,
wrong format, missing metadata) into a :class:`~ser_edge.runtime.errors.SerEdgeError` subclass
with the path in the message, never an engine traceback. The engine itself is imported inside
the constructor so importing a backend module stays cheap.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import ClassVar, Tuple

import numpy as np

from ..errors import SerEdgeError
from ..metadata import MetadataError, ModelMetadata


class BackendError(SerEdgeError, RuntimeError):
    """An engine is missing, or failed on input the runtime considered valid."""


class Backend(ABC):
    """One loaded model. Subclasses set ``name`` and ``metadata`` and implement :meth:`_run`."""

    #: Registry name, also accepted by ``load_backend(..., backend=name)``.
    name: ClassVar[str] = ""

    metadata: ModelMetadata
    path: str
    threads: int

    def __init__(self, path: str, threads: int = 1) -> None:
        self.path = os.fspath(path)
        self.threads = max(1, int(threads))
        if not os.path.isfile(self.path):
            raise MetadataError(f"{self.path}: no such model file")

    @property
    def labels(self):
        return self.metadata.labels

    def run(self, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``(B, T, F) float32, (B,) int64 -> (B, C) float32``. Validates shapes, then calls ``_run``."""
        features, lengths = check_inputs(features, lengths, self.metadata.feature_config.n_features)
        logits = np.asarray(self._run(features, lengths), dtype=np.float32)
        expected = (features.shape[0], len(self.metadata.labels))
        if logits.shape != expected:
            raise BackendError(f"{self.path}: model returned logits of shape {logits.shape}, "
                               f"expected {expected} (labels and model disagree)")
        if not np.all(np.isfinite(logits)):  # corrupt weights; softmax would silently pick label 0
            raise BackendError(f"{self.path}: model returned NaN or infinite logits (corrupt weights?)")
        return logits

    @abstractmethod
    def _run(self, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Engine call on validated inputs (contiguous float32 / int64)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, threads={self.threads})"


def check_inputs(features: np.ndarray, lengths: np.ndarray, n_features: int) -> Tuple[np.ndarray, np.ndarray]:
    """Validate and coerce model inputs. -> ``((B, T, F) float32, (B,) int64)``, both C-contiguous."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    if features.ndim != 3 or features.shape[2] != n_features:
        raise ValueError(f"features must be (batch, time, {n_features}), got {features.shape}")
    if lengths.shape != (features.shape[0],):
        raise ValueError(f"lengths must be ({features.shape[0]},), got {lengths.shape}")
    if features.shape[0] and (lengths.min() < 1 or lengths.max() > features.shape[1]):
        raise ValueError(f"lengths must lie in [1, {features.shape[1]}], got {lengths.tolist()}")
    return features, lengths
