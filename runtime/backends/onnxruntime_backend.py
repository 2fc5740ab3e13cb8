"""ONNX Runtime backend for ``.onnx`` models (fp32 or int8); metadata from ``metadata_props``.

A unidirectional LSTM is also exported as a *stateful* graph beside the model
(``model.onnx`` -> ``model.stream.onnx``, ``model.int8.onnx`` -> ``model.int8.stream.onnx``):
inputs ``features``, ``lengths``, ``h0``, ``c0`` ``(num_layers, batch, hidden) float32``, outputs
``logits`` (at each item's last valid frame), ``hn``, ``cn`` (after all ``time`` frames), and the
prop ``ser_edge.stateful`` (JSON: ``num_layers``, ``hidden_size``). Opened directly it classifies
like the plain model (zero state); :meth:`OnnxRuntimeBackend.stepper` steps it with state.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Tuple

import numpy as np

from ..metadata import INPUT_FEATURES, INPUT_LENGTHS, OUTPUT_LOGITS, MetadataError, ModelMetadata
from .base import Backend, BackendError

#: Graph names of the stateful variant's state (see the module docstring).
STATE_INPUTS, STATE_OUTPUTS = ("h0", "c0"), ("hn", "cn")
STATEFUL_PROP = "ser_edge.stateful"
STREAM_SUFFIX = ".stream"


def stream_model_path(path: str) -> str:
    """The stateful variant beside ``path``: ``x.onnx -> x.stream.onnx`` (itself if it is one)."""
    root, ext = os.path.splitext(os.fspath(path))
    return os.fspath(path) if root.endswith(STREAM_SUFFIX) else root + STREAM_SUFFIX + ext


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: str, threads: int = 1) -> None:
        super().__init__(path, threads)
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("onnxruntime is not installed: pip install onnxruntime") from None
        opts = ort.SessionOptions()
        # One inference at a time on a small device: a fixed intra-op pool, no inter-op
        # parallelism, and no warning spam on stderr.
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(self.path, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own (pybind) exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MetadataError(f"{self.path}: not a loadable ONNX model ({first[:200]})") from None
        try:
            props = dict(self.session.get_modelmeta().custom_metadata_map)
            inputs = {i.name for i in self.session.get_inputs()}
            outputs = [o.name for o in self.session.get_outputs()]
        except UnicodeDecodeError:  # ONNX strings are UTF-8; a corrupt file holds any bytes
            raise MetadataError(f"{self.path}: corrupt ONNX model (metadata or names are not UTF-8)") from None
        self.metadata = ModelMetadata.from_props(props, source=self.path)
        self.state_shape = _state_shape(props, self.path)  # (num_layers, hidden) of a stateful graph
        expected = {INPUT_FEATURES, INPUT_LENGTHS} | (set(STATE_INPUTS) if self.state_shape else set())
        if self.state_shape and not set(STATE_OUTPUTS) <= set(outputs):
            raise MetadataError(f"{self.path}: stateful graph lacks outputs {list(STATE_OUTPUTS)}")
        if inputs != expected or OUTPUT_LOGITS not in outputs:
            raise MetadataError(f"{self.path}: graph has inputs {sorted(inputs)} and outputs {outputs}; "
                                f"expected inputs {INPUT_FEATURES!r}, {INPUT_LENGTHS!r} and output {OUTPUT_LOGITS!r}")

    def _run(self, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        feeds = {INPUT_FEATURES: features, INPUT_LENGTHS: lengths}
        if self.state_shape:  # a stateful graph classifies a clip from zero state
            zeros = np.zeros((self.state_shape[0], features.shape[0], self.state_shape[1]), dtype=np.float32)
            feeds.update({STATE_INPUTS[0]: zeros, STATE_INPUTS[1]: zeros})
        try:
            (logits,) = self.session.run([OUTPUT_LOGITS], feeds)
        except Exception as e:
            raise BackendError(f"{self.path}: onnxruntime failed: {str(e).splitlines()[0][:200]}") from None
        return logits

    def stepper(self) -> OnnxStepper:
        """Stateful stepping through this file if it is a stateful graph, else through the
        stateful variant beside it (:func:`stream_model_path`), which must carry the same feature
        config and labels. Raises :class:`MetadataError` when there is none."""
        if self.state_shape:
            return OnnxStepper(self)
        arch = self.metadata.model_config.get("arch")
        if arch != "lstm":
            raise MetadataError(f"{self.path}: a {arch} model cannot run statefully (it reads the whole window)")
        path = stream_model_path(self.path)
        if not os.path.isfile(path):
            raise MetadataError(f"{self.path}: no stateful variant {os.path.basename(path)} beside it "
                                "(`ser-edge export` writes one for lstm models)")
        other = OnnxRuntimeBackend(path, self.threads)
        if not other.state_shape:
            raise MetadataError(f"{path}: not a stateful graph (no {STATEFUL_PROP!r})")
        if (other.metadata.feature_config != self.metadata.feature_config
                or list(other.metadata.labels) != list(self.metadata.labels)):
            raise MetadataError(f"{path}: its feature config or labels differ from {self.path}'s")
        return OnnxStepper(other)


#: An LSTM state ``(h, c)``, each ``(num_layers, batch, hidden) float32``.
State = Tuple[np.ndarray, np.ndarray]


class OnnxStepper:
    """A stateful graph one chunk of frames at a time (the interface of
    :class:`~ser_edge.runtime.backends.numpy_lstm.NumpyStepper`): state ``(h, c)``, each
    ``(num_layers, B, hidden) float32``."""

    def __init__(self, backend: OnnxRuntimeBackend) -> None:
        self.backend = backend
        self.path = backend.path
        if backend.state_shape is None:
            raise MetadataError(f"{backend.path}: not a stateful graph (no {STATEFUL_PROP!r})")
        self.num_layers, self.hidden_size = backend.state_shape
        self.n_features = backend.metadata.feature_config.n_features
        self.n_classes = len(backend.metadata.labels)

    def zero_state(self, batch: int = 1) -> State:
        shape = (self.num_layers, batch, self.hidden_size)
        return np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)

    def step(self, x: np.ndarray, state: State) -> Tuple[np.ndarray, State]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        h0, c0 = (np.ascontiguousarray(a, dtype=np.float32) for a in state)
        if x.ndim != 3 or x.shape[1] < 1 or x.shape[2] != self.n_features:
            raise ValueError(f"features must be (batch, time >= 1, {self.n_features}), got {x.shape}")
        if h0.shape != (self.num_layers, x.shape[0], self.hidden_size) or c0.shape != h0.shape:
            raise ValueError(f"state must be 2 x {(self.num_layers, x.shape[0], self.hidden_size)}, "
                             f"got {h0.shape} and {c0.shape}")
        feeds = {INPUT_FEATURES: x, INPUT_LENGTHS: np.full(x.shape[0], x.shape[1], dtype=np.int64),
                 STATE_INPUTS[0]: h0, STATE_INPUTS[1]: c0}
        try:
            logits, h, c = self.backend.session.run([OUTPUT_LOGITS, *STATE_OUTPUTS], feeds)
        except Exception as e:
            raise BackendError(f"{self.path}: onnxruntime failed: {str(e).splitlines()[0][:200]}") from None
        return logits, (h, c)


def _state_shape(props, source: str) -> Optional[Tuple[int, int]]:
    """``(num_layers, hidden_size)`` from the :data:`STATEFUL_PROP` of a stateful graph, else None."""
    text = props.get(STATEFUL_PROP)
    if text is None:
        return None
    try:
        d = json.loads(text)
        shape = (int(d["num_layers"]), int(d["hidden_size"]))
    except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as e:
        raise MetadataError(f"{source}: corrupt {STATEFUL_PROP!r}: {str(e)[:100]}") from None
    if not (1 <= shape[0] <= 64 and 1 <= shape[1] <= 65536):
        raise MetadataError(f"{source}: implausible state shape {shape} in {STATEFUL_PROP!r}")
    return shape
