"""Inference backends and the loader that picks one by file extension.

=============  ===========  ==============================================
backend        file         engine (imported lazily)
=============  ===========  ==============================================
onnxruntime    ``.onnx``    ``onnxruntime``
litert         ``.tflite``  ``ai_edge_litert`` or ``tflite_runtime``
numpy          ``.npz``     none: a pure-numpy LSTM
=============  ===========  ==============================================

The interface is :class:`~ser_edge.runtime.backends.base.Backend`.
"""

from __future__ import annotations

import importlib
import os
from typing import Dict, Tuple

from ..metadata import MetadataError
from .base import Backend, BackendError

#: name -> (module, class, file extensions). Modules are imported only when chosen.
BACKENDS: Dict[str, Tuple[str, str, Tuple[str, ...]]] = {
    "onnxruntime": ("onnxruntime_backend", "OnnxRuntimeBackend", (".onnx",)),
    "litert": ("litert", "LiteRTBackend", (".tflite",)),
    "numpy": ("numpy_lstm", "NumpyLSTMBackend", (".npz",)),
}


def backend_for_path(path: str) -> str:
    """The backend name that opens ``path``, from its extension. Raises :class:`MetadataError`."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    for name, (_, _, exts) in BACKENDS.items():
        if ext in exts:
            return name
    known = ", ".join(e for _, _, es in BACKENDS.values() for e in es)
    raise MetadataError(f"{path}: unknown model file type {ext or '(no extension)'!r}; expected one of {known}")


def load_backend(path: str, backend: str = "auto", threads: int = 1) -> Backend:
    """Open ``path`` with ``backend`` ("auto" = by extension). The backend must match the file type."""
    path = os.fspath(path)
    inferred = backend_for_path(path)
    if backend == "auto":
        backend = inferred
    elif backend not in BACKENDS:
        raise MetadataError(f"unknown backend {backend!r}; choose auto or one of {sorted(BACKENDS)}")
    elif backend != inferred:
        wanted = "/".join(BACKENDS[backend][2])
        raise MetadataError(f"{path}: the {backend} backend reads {wanted} files; "
                            f"this is a {inferred} model (use --backend auto)")
    module_name, class_name, _ = BACKENDS[backend]
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ImportError as e:  # the backend module itself is missing from this install
        raise BackendError(f"backend {backend!r} is not available: {e}") from None
    return getattr(module, class_name)(path, threads=threads)


__all__ = ["BACKENDS", "Backend", "BackendError", "backend_for_path", "load_backend"]
