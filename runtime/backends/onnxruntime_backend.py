"""ONNX Runtime backend for ``.onnx`` models (fp32 or int8); metadata from ``metadata_props``."""

from __future__ import annotations

import numpy as np

from ..metadata import INPUT_FEATURES, INPUT_LENGTHS, OUTPUT_LOGITS, MetadataError, ModelMetadata
from .base import Backend, BackendError


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    extensions = (".onnx",)

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
        if inputs != {INPUT_FEATURES, INPUT_LENGTHS} or OUTPUT_LOGITS not in outputs:
            raise MetadataError(f"{self.path}: graph has inputs {sorted(inputs)} and outputs {outputs}; "
                                f"expected inputs {INPUT_FEATURES!r}, {INPUT_LENGTHS!r} and output {OUTPUT_LOGITS!r}")

    def _run(self, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        try:
            (logits,) = self.session.run([OUTPUT_LOGITS], {INPUT_FEATURES: features, INPUT_LENGTHS: lengths})
        except Exception as e:
            raise BackendError(f"{self.path}: onnxruntime failed: {str(e).splitlines()[0][:200]}") from None
        return logits
