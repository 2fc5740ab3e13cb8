"""LiteRT (TensorFlow Lite) backend for ``.tflite`` models, fp32 or dynamic-range int8.

Engine: ``ai_edge_litert`` (imported when a model is opened); ``tflite_runtime`` only when
ai_edge_litert is not installed at all - tflite-runtime 2.14 is the last release, needs
``numpy<2`` and misreads int8 models from current converters.

Integrity: LiteRT parses a flatbuffer without bounds checks, so a damaged file can crash the
process. The exporter writes the file's sha256 into the sidecar (:data:`DIGEST_KEY`); the
bytes are hashed and compared before the interpreter ever sees them, and exactly those bytes
are handed over (no second read). A file without a digest (exported before digests existed)
is refused with a one-line error; re-export it, or call :func:`write_digest` on a file you trust.

Metadata: the :meth:`ModelMetadata.to_props` dict as JSON, embedded in the flatbuffer's
``metadata`` table under the name :data:`METADATA_NAME` (read here with a few lines of
flatbuffer parsing, no schema package needed), else from the ``<model>.json`` sidecar that the
exporter writes next to it. A model with neither is refused.

The exported graphs have a dynamic batch and time axis; the interpreter's inputs are resized
to each call's ``(B, T)`` and re-allocated only when that shape changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..metadata import INPUT_FEATURES, INPUT_LENGTHS, OUTPUT_LOGITS, MetadataError, ModelMetadata
from .base import Backend, BackendError

#: Name of the flatbuffer ``metadata`` entry that holds the props as JSON.
METADATA_NAME = "ser_edge"
SIDECAR_SUFFIX = ".json"
#: Sidecar key holding the sha256 (hex) of the ``.tflite`` file's bytes, written at export.
DIGEST_KEY = "ser_edge.sha256"
#: TFLite flatbuffers carry this file identifier at bytes 4..8.
FILE_IDENTIFIER = b"TFL3"
# Field numbers in tensorflow/lite/schema/schema.fbs.
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


def sidecar_path(model_path: str) -> str:
    """``model.tflite`` -> ``model.tflite.json``."""
    return os.fspath(model_path) + SIDECAR_SUFFIX


# --- minimal flatbuffer reading (little-endian tables, vtables and vectors) ----------------------

def _field(buf: bytes, table: int, index: int) -> Optional[int]:
    """Absolute position of field ``index`` of the table at ``table``; None when it is absent."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vtable_size = struct.unpack_from("<H", buf, vtable)[0]
    if 4 + 2 * index >= vtable_size:
        return None
    offset = struct.unpack_from("<H", buf, vtable + 4 + 2 * index)[0]
    return table + offset if offset else None


def _deref(buf: bytes, pos: int) -> int:
    """Follow the unsigned offset stored at ``pos``."""
    return pos + struct.unpack_from("<I", buf, pos)[0]


def _vector(buf: bytes, pos: int) -> Tuple[int, int]:
    """``(start of the elements, count)`` of the vector referenced at ``pos``."""
    vec = _deref(buf, pos)
    return vec + 4, struct.unpack_from("<I", buf, vec)[0]


def _tables(buf: bytes, pos: Optional[int]) -> List[int]:
    if pos is None:
        return []
    start, n = _vector(buf, pos)
    return [_deref(buf, start + 4 * k) for k in range(n)]


def _bytes(buf: bytes, pos: Optional[int]) -> bytes:
    if pos is None:
        return b""
    start, n = _vector(buf, pos)
    if start + n > len(buf):
        raise ValueError("vector past the end of the file")
    return bytes(buf[start:start + n])


def _scalar(buf: bytes, pos: Optional[int], fmt: str) -> int:
    return struct.unpack_from(fmt, buf, pos)[0] if pos is not None else 0


def _buffer_data(buf: bytes, table: int) -> bytes:
    """A ``Buffer``'s bytes: inline, or (models > 2 GB) at ``offset``/``size`` in the file."""
    offset = _scalar(buf, _field(buf, table, _BUFFER_OFFSET), "<Q")
    if offset > 1:
        size = _scalar(buf, _field(buf, table, _BUFFER_SIZE), "<Q")
        return bytes(buf[offset:offset + size])
    return _bytes(buf, _field(buf, table, _BUFFER_DATA))


def metadata_entries(data: bytes, source: str = "model") -> Dict[str, bytes]:
    """``{name: bytes}`` of a TFLite flatbuffer's ``metadata`` table (the converter adds
    ``min_runtime_version`` and ``CONVERSION_METADATA``; the exporter adds :data:`METADATA_NAME`).
    Raises :class:`MetadataError` when ``data`` is not a TFLite model."""
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise MetadataError(f"{source}: not a TFLite model (no {FILE_IDENTIFIER.decode()} identifier)")
    try:
        root = _deref(data, 0)
        buffers = _tables(data, _field(data, root, _MODEL_BUFFERS))
        entries = {}
        for entry in _tables(data, _field(data, root, _MODEL_METADATA)):
            name = _bytes(data, _field(data, entry, _METADATA_NAME)).decode("utf-8", "replace")
            entries[name] = _buffer_data(data, buffers[_scalar(data, _field(data, entry, _METADATA_BUFFER), "<I")])
    except (struct.error, IndexError, ValueError):
        raise MetadataError(f"{source}: corrupt TFLite flatbuffer") from None
    return entries


def read_embedded_props(data: bytes, source: str = "model") -> Optional[Dict[str, str]]:
    """The props embedded under :data:`METADATA_NAME` in a TFLite flatbuffer; None when the model
    has no such entry. Raises :class:`MetadataError` when ``data`` is not a TFLite model or the
    entry is not a JSON object of strings."""
    raw = metadata_entries(data, source).get(METADATA_NAME)
    return None if raw is None else _parse_props(raw, source)


def min_runtime_version(data: bytes) -> Optional[str]:
    """The converter's ``min_runtime_version`` entry (e.g. ``"2.17.0"`` for int8 models), if any."""
    try:
        raw = metadata_entries(data).get("min_runtime_version")
    except MetadataError:
        return None
    return raw.split(b"\0")[0].decode("ascii", "replace") if raw else None


def _parse_props(raw: bytes, source: str) -> Dict[str, str]:
    try:
        props = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MetadataError(f"{source}: ser-edge metadata is not valid JSON: {e}") from None
    if not isinstance(props, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in props.items()):
        raise MetadataError(f"{source}: ser-edge metadata must be a JSON object of strings")
    return props


def file_digest(data: bytes) -> str:
    """sha256 hex of a model file's bytes (what :data:`DIGEST_KEY` holds)."""
    return hashlib.sha256(data).hexdigest()


def verify_digest(path: str, data: bytes) -> None:
    """Check ``data`` (the bytes of ``path``) against the digest in its sidecar.
    Raises :class:`MetadataError` when the sidecar or digest is missing or does not match."""
    sidecar = sidecar_path(path)
    name = os.path.basename(sidecar)
    if not os.path.isfile(sidecar):
        raise MetadataError(f"{path}: no {name} sidecar with its sha256, so its integrity cannot be checked "
                            "before LiteRT parses it; re-export the model with `ser-edge export`")
    expected = _parse_props(_read(sidecar), sidecar).get(DIGEST_KEY)
    if expected is None:
        raise MetadataError(f"{path}: {name} has no {DIGEST_KEY} (exported before integrity digests); re-export "
                            "the model, or if you trust the file call ser_edge.runtime.backends.litert.write_digest")
    if file_digest(data) != expected.strip().lower():
        raise MetadataError(f"{path}: sha256 does not match the one in {name}: the file is damaged or was "
                            "changed after export; refusing to hand it to LiteRT")


def write_digest(path: str) -> str:
    """Record the sha256 of ``path`` in its sidecar (created from the embedded metadata when
    missing), atomically. For a file you trust that predates digests. Returns the digest."""
    from ..io import atomic_write_json

    data = _read(path)
    sidecar = sidecar_path(path)
    props = _parse_props(_read(sidecar), sidecar) if os.path.isfile(sidecar) else read_embedded_props(data, path)
    if props is None:
        raise MetadataError(f"{path}: no ser-edge metadata to write a sidecar from")
    digest = file_digest(data)
    atomic_write_json(sidecar, {**props, DIGEST_KEY: digest})
    return digest


def load_verified(path: str) -> bytes:
    """The bytes of ``path`` once :func:`verify_digest` accepts them: hand these, not the path, to LiteRT."""
    data = _read(path)
    verify_digest(path, data)
    return data


def read_props(path: str, data: Optional[bytes] = None) -> Dict[str, str]:
    """Props of a ``.tflite`` file (``data``: its bytes, if already read): embedded first (they
    cannot be separated from the model), else the ``.json`` sidecar (without :data:`DIGEST_KEY`).
    Raises :class:`MetadataError` when there are none."""
    props = read_embedded_props(_read(path) if data is None else data, path)
    if props is not None:
        return props
    sidecar = sidecar_path(path)
    if not os.path.isfile(sidecar):
        raise MetadataError(f"{path}: no ser-edge metadata (neither embedded nor a {os.path.basename(sidecar)} "
                            "sidecar). Export models with `ser-edge export`.")
    props = _parse_props(_read(sidecar), sidecar)
    props.pop(DIGEST_KEY, None)
    return props


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise MetadataError(f"{path}: cannot read: {e.strerror or e}") from None


# --- the interpreter ------------------------------------------------------------------------------

def _interpreter_class() -> Tuple[Any, str]:
    """``(Interpreter class, engine name)``: ``ai_edge_litert``'s; ``tflite_runtime``'s only when
    ai_edge_litert is absent."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        raise BackendError("LiteRT is not installed: pip install 'ser-edge[tflite]'") from None
    return Interpreter, "tflite_runtime"


class TFLiteInterpreter:
    """A ``.tflite`` model with inputs ``features``/``lengths`` and output ``logits``, callable as
    ``(B, T, F) float32, (B,) int64 -> (B, C) float32``. Needs no ser-edge metadata."""

    def __init__(self, path: str, threads: int = 1, content: Optional[bytes] = None) -> None:
        self.source = path
        interpreter_class, self.engine = _interpreter_class()
        try:
            args = {"model_content": content} if content is not None else {"model_path": path}
            self.interpreter = interpreter_class(**args, num_threads=max(1, int(threads)))
        except (ValueError, RuntimeError) as e:  # the engine's errors for unreadable models
            raise MetadataError(f"{path}: not a loadable TFLite model ({str(e).strip().splitlines()[0][:200]})"
                                f"{self._version_hint(path, content)}") from None
        inputs = {d["name"]: d["index"] for d in self.interpreter.get_input_details()}
        outputs = {d["name"]: d["index"] for d in self.interpreter.get_output_details()}
        if set(inputs) != {INPUT_FEATURES, INPUT_LENGTHS} or OUTPUT_LOGITS not in outputs:
            raise MetadataError(f"{path}: graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}; expected "
                                f"inputs {INPUT_FEATURES!r}, {INPUT_LENGTHS!r} and output {OUTPUT_LOGITS!r}")
        self._features, self._lengths = inputs[INPUT_FEATURES], inputs[INPUT_LENGTHS]
        self._logits = outputs[OUTPUT_LOGITS]
        self._shape: Optional[Tuple[int, ...]] = None

    def _version_hint(self, path: str, content: Optional[bytes]) -> str:
        """Why an old engine may refuse a valid model: int8 models need LiteRT >= 2.17."""
        try:
            needed = min_runtime_version(content if content is not None else _read(path))
        except MetadataError:
            return ""
        return f"; the model needs TFLite runtime >= {needed}, this is {self.engine}" if needed else ""

    @classmethod
    def from_bytes(cls, content: bytes, threads: int = 1) -> TFLiteInterpreter:
        return cls("<in-memory model>", threads, content=content)

    def _allocate(self, shape: Tuple[int, ...]) -> None:
        """Resize the inputs to ``shape`` (B, T, F); allocation is kept while the shape repeats."""
        if shape != self._shape:
            self.interpreter.resize_tensor_input(self._features, list(shape))
            self.interpreter.resize_tensor_input(self._lengths, [shape[0]])
            self.interpreter.allocate_tensors()
            self._shape = shape

    def __call__(self, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        features = np.ascontiguousarray(features, dtype=np.float32)
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        try:
            self._allocate(features.shape)
            self.interpreter.set_tensor(self._features, features)
            self.interpreter.set_tensor(self._lengths, lengths)
            self.interpreter.invoke()
        except (ValueError, RuntimeError) as e:
            self._shape = None  # a failed resize leaves the allocation unknown
            raise BackendError(f"{self.source}: LiteRT failed: {str(e).strip().splitlines()[0][:200]}") from None
        return self.interpreter.get_tensor(self._logits)  # a copy, safe to keep


class LiteRTBackend(Backend):
    name = "litert"

    def __init__(self, path: str, threads: int = 1) -> None:
        super().__init__(path, threads)
        # Metadata (parsed here in Python, safe on any bytes) and integrity before the engine: a
        # bare or damaged model never reaches it, and it gets exactly the bytes that were verified.
        data = _read(self.path)
        props = read_props(self.path, data)
        verify_digest(self.path, data)
        self.metadata = ModelMetadata.from_props(props, source=self.path)
        self.model = TFLiteInterpreter(self.path, self.threads, content=data)

    def _run(self, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.model(features, lengths)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


__all__ = ["METADATA_NAME", "SIDECAR_SUFFIX", "DIGEST_KEY", "sidecar_path", "metadata_entries", "read_embedded_props",
           "min_runtime_version", "read_props", "file_digest", "verify_digest", "write_digest", "load_verified",
           "TFLiteInterpreter", "LiteRTBackend"]
