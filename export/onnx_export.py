"""ONNX export: fp32 through the legacy (TorchScript-based) exporter, int8 through onnxruntime's
dynamic quantisation.

Why the legacy exporter (``dynamo=False``): it emits one native ``LSTM`` op per layer with
symbolic batch and time axes. The dynamo exporter unrolls or specialises the recurrence and, on
a second export in the same process, silently froze the time axis to the example's length. We
*check* the axes after export rather than trust either exporter. torch 2.13 warns that the
legacy exporter is deprecated; we leave that warning alone.

Graph contract (see :mod:`ser_edge.runtime.metadata`): inputs ``features`` ``(batch, time,
n_mfcc) float32`` and ``lengths`` ``(batch,) int64``, output ``logits`` ``(batch, n_classes)
float32``; the :class:`ModelMetadata` props live in ``metadata_props``.
"""

from __future__ import annotations

import os
from typing import Dict, List, Sequence

import numpy as np
import torch

from ser_edge.runtime.metadata import INPUT_FEATURES, INPUT_LENGTHS, OUTPUT_LOGITS, ModelMetadata

from .common import example_inputs
from .errors import ExportError

OPSET = 17
#: Which axes must stay symbolic: ``{tensor name: {axis: dim_param}}``.
DYNAMIC_AXES: Dict[str, Dict[int, str]] = {
    INPUT_FEATURES: {0: "batch", 1: "time"},
    INPUT_LENGTHS: {0: "batch"},
    OUTPUT_LOGITS: {0: "batch"},
}


def export_onnx(model: torch.nn.Module, metadata: ModelMetadata, path: str, n_lstm: int) -> None:
    """Export fp32 ``model`` to ``path`` and check it. ``n_lstm``: LSTM layers expected in the
    graph (layers x stacks). Raises :class:`ExportError` when a check fails."""
    features, lengths = example_inputs(metadata.feature_config.n_mfcc)
    torch.onnx.export(model, (features, lengths), path, dynamo=False, opset_version=OPSET,
                      input_names=[INPUT_FEATURES, INPUT_LENGTHS], output_names=[OUTPUT_LOGITS],
                      dynamic_axes=DYNAMIC_AXES, do_constant_folding=True)
    import onnx

    proto = onnx.load(path)
    check_symbolic_axes(proto, path)
    check_ops(proto, path, {"LSTM": n_lstm})
    set_metadata(proto, metadata)
    onnx.save(proto, path)
    check_model_file(path)


def quantize_onnx(src: str, dst: str, n_lstm: int) -> None:
    """Dynamic int8 quantisation of ``src`` into ``dst`` (weights int8 per channel, activations
    quantised at run time). Every ``LSTM`` must become ``DynamicQuantizeLSTM``. Metadata is set
    by the caller afterwards (quantize_dynamic does not promise to keep ``metadata_props``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QInt8)
    import onnx

    proto = onnx.load(dst)
    check_symbolic_axes(proto, dst)
    check_ops(proto, dst, {"DynamicQuantizeLSTM": n_lstm, "LSTM": 0})


def write_metadata(path: str, metadata: ModelMetadata) -> None:
    """Replace the ser-edge props of the ONNX file at ``path`` and re-check it."""
    import onnx

    proto = onnx.load(path)
    set_metadata(proto, metadata)
    onnx.save(proto, path)
    check_model_file(path)


def set_metadata(proto, metadata: ModelMetadata) -> None:
    """Put ``metadata.to_props()`` into ``proto.metadata_props``, replacing older ser-edge keys and
    keeping foreign ones (e.g. onnxruntime's ``onnx.infer``)."""
    props = metadata.to_props()
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in props and not p.key.startswith("ser_edge.")]
    del proto.metadata_props[:]
    for key, value in keep + sorted(props.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata_props(path: str) -> Dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict."""
    import onnx

    return {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}


def check_symbolic_axes(proto, source: str) -> None:
    """Batch and time must be named (``dim_param``) axes, or the model only accepts the example's
    shape - a silent failure on the device."""
    tensors = {v.name: v for v in list(proto.graph.input) + list(proto.graph.output)}
    for name, axes in DYNAMIC_AXES.items():
        if name not in tensors:
            raise ExportError(f"{source}: graph has no tensor {name!r}")
        dims = tensors[name].type.tensor_type.shape.dim
        for axis, label in axes.items():
            if axis >= len(dims) or not dims[axis].dim_param:
                fixed = dims[axis].dim_value if axis < len(dims) else "missing"
                raise ExportError(f"{source}: the {label} axis of {name!r} is fixed ({fixed}), "
                                  "not symbolic; the exporter specialised the graph to the example input")


def check_ops(proto, source: str, expected: Dict[str, int]) -> None:
    """Exact op counts, e.g. ``{"LSTM": 4}``: the recurrence must be native ops, not unrolled."""
    counts: Dict[str, int] = {}
    for node in proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    for op, n in expected.items():
        if counts.get(op, 0) != n:
            raise ExportError(f"{source}: expected {n} {op} op(s), found {counts.get(op, 0)} "
                              f"(ops: {', '.join(sorted(counts))})")


def check_model_file(path: str) -> None:
    """``onnx.checker`` with shape inference, and an onnxruntime session must open it."""
    import onnx

    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"{path}: ONNX checker failed: {str(e).splitlines()[0]}") from None
    OnnxRunner(path)


class OnnxRunner:
    """onnxruntime session on one thread (the device default; also makes latencies comparable)."""

    def __init__(self, path: str, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors (Fail, InvalidGraph, ...)
            raise ExportError(f"{path}: onnxruntime cannot load it: {str(e).splitlines()[0]}") from None

    def __call__(self, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``(B, T, F) float32, (B,) int64 -> (B, C) float32``."""
        return self.session.run([OUTPUT_LOGITS], {
            INPUT_FEATURES: np.ascontiguousarray(features, dtype=np.float32),
            INPUT_LENGTHS: np.ascontiguousarray(lengths, dtype=np.int64),
        })[0]


def op_types(path: str) -> List[str]:
    """Sorted distinct op types of an ONNX file (for reports and tests)."""
    import onnx

    return sorted({n.op_type for n in onnx.load(path).graph.node})


def lstm_count(arch: str, num_layers: int) -> int:
    """LSTM ops the legacy exporter emits: one per layer per stack."""
    return num_layers * (2 if arch == "attn_bilstm" else 1)


__all__: Sequence[str] = (
    "OPSET", "DYNAMIC_AXES", "export_onnx", "quantize_onnx", "write_metadata", "set_metadata",
    "read_metadata_props", "check_symbolic_axes", "check_ops", "check_model_file", "OnnxRunner",
    "op_types", "lstm_count",
)
