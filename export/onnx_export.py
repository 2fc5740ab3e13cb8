"""ONNX export: fp32 through the legacy (TorchScript-based) exporter, int8 through onnxruntime's
dynamic quantisation.

Why the legacy exporter (``dynamo=False``): it emits one native ``LSTM`` op per layer with
symbolic batch and time axes. The dynamo exporter unrolls or specialises the recurrence and, on
a second export in the same process, silently froze the time axis to the example's length. We
*check* the axes after export rather than trust either exporter. torch 2.13 warns that the
legacy exporter is deprecated; we leave that warning alone.

BatchNorm (res_lstm_att, conv_lstm) exports in eval mode as ``MaskedBatchNorm.affine()``: the
constant folder turns the running statistics into one ``Mul`` + ``Add`` per norm (a transpose
sits between conv_lstm's ``Conv`` and its norm, so onnxruntime cannot fuse them; the cost is
O(time x channels), negligible next to the LSTM). conv_lstm's blocks must be native ``Conv``
ops (checked). Dynamic int8 turns the LSTMs into ``DynamicQuantizeLSTM`` and the matrix
products into ``MatMulInteger``, but leaves ``Conv`` in float (see :data:`INT8_OP_TYPES`).
stats_linear has no LSTM (masked mean/std pooling, then a ``Gemm`` head): its int8 graph
quantises that head, rewritten to ``MatMul`` first (:func:`gemm_to_matmul`).

Graph contract (see :mod:`ser_edge.runtime.metadata`): inputs ``features`` ``(batch, time,
n_mfcc) float32`` and ``lengths`` ``(batch,) int64``, output ``logits`` ``(batch, n_classes)
float32``; the :class:`ModelMetadata` props live in ``metadata_props``.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Sequence

import numpy as np
import torch

from ser_edge.runtime.backends.onnxruntime_backend import STATE_INPUTS, STATE_OUTPUTS, STATEFUL_PROP
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
    features, lengths = example_inputs(metadata.feature_config.n_features)
    torch.onnx.export(model, (features, lengths), path, dynamo=False, opset_version=OPSET,
                      input_names=[INPUT_FEATURES, INPUT_LENGTHS], output_names=[OUTPUT_LOGITS],
                      dynamic_axes=DYNAMIC_AXES, do_constant_folding=True)
    import onnx

    proto = onnx.load(path)
    check_symbolic_axes(proto, path)
    # conv_lstm: its convolutions must stay native Conv ops over the symbolic time axis
    check_ops(proto, path, {"LSTM": n_lstm, "Conv": conv_count(metadata.model_config)})
    set_metadata(proto, metadata)
    onnx.save(proto, path)
    check_model_file(path)


#: What dynamic int8 quantises. Not ``Conv``: onnxruntime's ``ConvInteger`` (with the per-call
#: activation quantisation around it) made the shipped conv_lstm *slower* than fp32 (0.72 vs
#: 0.51 ms a clip, one thread, x86) and four times less accurate (max |logit diff| 0.054 vs
#: 0.013); with float convs the int8 model takes 0.34 ms. The convs' weights then stay fp32
#: (+210 kB for the shipped model, 448 kB in all).
INT8_OP_TYPES = ("LSTM", "MatMul")


def quantize_onnx(src: str, dst: str, n_lstm: int) -> None:
    """Dynamic int8 quantisation of ``src`` into ``dst`` (weights int8 per channel, activations
    quantised at run time). Every ``LSTM`` must become ``DynamicQuantizeLSTM``. A graph without
    LSTMs (``n_lstm == 0``: stats_linear) has its ``Gemm`` heads rewritten to ``MatMul`` + ``Add``
    first (:func:`gemm_to_matmul`), since onnxruntime's dynamic int8 has no ``Gemm`` kernel and
    would otherwise quantise nothing; each must become ``MatMulInteger``. Metadata is set by the
    caller afterwards (quantize_dynamic does not promise to keep ``metadata_props``)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    expected = {"DynamicQuantizeLSTM": n_lstm, "LSTM": 0}
    tmp = None
    if n_lstm == 0:
        proto = onnx.load(src)
        n_gemm = gemm_to_matmul(proto, src)
        if n_gemm == 0:
            raise ExportError(f"{src}: no LSTM and no Gemm: dynamic int8 would quantise nothing")
        tmp = f"{dst}.gemm.onnx"
        onnx.save(proto, tmp)
        src, expected = tmp, {**expected, "Gemm": 0, "MatMulInteger": n_gemm}
    try:
        quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(INT8_OP_TYPES))
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    proto = onnx.load(dst)
    check_symbolic_axes(proto, dst)
    check_ops(proto, dst, expected)


def gemm_to_matmul(proto, source: str) -> int:
    """Rewrite every ``Gemm`` (``Linear``: ``alpha = beta = 1``, ``transA = 0``, constant ``B``)
    of ``proto`` in place into ``MatMul(A, B')`` + ``Add(C)`` with ``B'`` stored pre-transposed,
    the same arithmetic in the form onnxruntime's dynamic int8 quantises. Returns the count.
    Raises :class:`ExportError` for a ``Gemm`` of another form."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    nodes, count = [], 0
    for node in proto.graph.node:
        if node.op_type != "Gemm":
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0) \
                or node.input[1] not in inits or len(node.input) != 3:
            raise ExportError(f"{source}: Gemm {node.name!r} is not a plain Linear ({attrs}); cannot quantise it")
        weight = numpy_helper.to_array(inits[node.input[1]])
        weight = weight.T if attrs.get("transB", 0) else weight  # (in, out) for A @ B
        name = f"{node.input[1]}__matmul"
        proto.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), name))
        product = f"{node.output[0]}__matmul"
        nodes.append(helper.make_node("MatMul", [node.input[0], name], [product], name=f"{node.name}_MatMul"))
        nodes.append(helper.make_node("Add", [product, node.input[2]], list(node.output), name=f"{node.name}_Add"))
        count += 1
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    used = {i for n in proto.graph.node for i in n.input}
    kept = [t for t in proto.graph.initializer if t.name in used]  # the untransposed copies go
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    return count


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
    """onnxruntime session on one thread (the device default; also makes latencies comparable).
    A stateful graph (:func:`export_stream_onnx`) runs from zero state, like the plain model."""

    def __init__(self, path: str, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors (Fail, InvalidGraph, ...)
            raise ExportError(f"{path}: onnxruntime cannot load it: {str(e).splitlines()[0]}") from None
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        # (num_layers, hidden) of a stateful graph's h0 (axes: layers, batch, hidden), else None
        self.state = (shapes[STATE_INPUTS[0]][0], shapes[STATE_INPUTS[0]][2]) if STATE_INPUTS[0] in shapes else None

    def __call__(self, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``(B, T, F) float32, (B,) int64 -> (B, C) float32``."""
        feeds = {INPUT_FEATURES: np.ascontiguousarray(features, dtype=np.float32),
                 INPUT_LENGTHS: np.ascontiguousarray(lengths, dtype=np.int64)}
        if self.state is not None:
            zeros = np.zeros((self.state[0], len(features), self.state[1]), dtype=np.float32)
            feeds.update({STATE_INPUTS[0]: zeros, STATE_INPUTS[1]: zeros})
        return self.session.run([OUTPUT_LOGITS], feeds)[0]


class StatefulLSTM(torch.nn.Module):
    """An ``LSTMClassifier`` with its LSTM state as graph inputs and outputs, for streaming:
    ``(features, lengths, h0, c0) -> (logits, hn, cn)``. ``logits`` reads each item's last valid
    frame like the plain model; ``hn``/``cn`` are the state after *all* ``time`` frames (a stream
    feeds only valid frames)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.lstm, self.head = model.lstm, model.head

    def forward(self, features, lengths, h0, c0):
        out, (hn, cn) = self.lstm(features, (h0, c0))
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, out.size(-1))
        return self.head(out.gather(1, last).squeeze(1)), hn, cn


#: Symbolic axes of the stateful graph: the plain graph's plus the state's batch axis.
STREAM_DYNAMIC_AXES: Dict[str, Dict[int, str]] = {
    **DYNAMIC_AXES, **{name: {1: "batch"} for name in STATE_INPUTS + STATE_OUTPUTS}}


def export_stream_onnx(model: torch.nn.Module, metadata: ModelMetadata, path: str) -> None:
    """Export the stateful variant (:class:`StatefulLSTM`) of an ``lstm`` ``model`` to ``path``
    and check it: native ``LSTM`` ops, symbolic batch/time axes, and stepping it over a sequence
    in two chunks gives the plain model's logits. Raises :class:`ExportError`."""
    if getattr(model, "cfg", None) is None or model.cfg.arch != "lstm":
        raise ExportError("only unidirectional lstm models have a stateful variant")
    wrapper = StatefulLSTM(model).eval()
    features, lengths = example_inputs(metadata.feature_config.n_features)
    state = torch.zeros(model.cfg.num_layers, features.shape[0], model.cfg.hidden_size)
    torch.onnx.export(wrapper, (features, lengths, state, state), path, dynamo=False, opset_version=OPSET,
                      input_names=[INPUT_FEATURES, INPUT_LENGTHS, *STATE_INPUTS],
                      output_names=[OUTPUT_LOGITS, *STATE_OUTPUTS],
                      dynamic_axes=STREAM_DYNAMIC_AXES, do_constant_folding=True)
    import onnx

    proto = onnx.load(path)
    check_symbolic_axes(proto, path)
    check_ops(proto, path, {"LSTM": model.cfg.num_layers})
    write_stream_metadata(proto, metadata, model.cfg.num_layers, model.cfg.hidden_size)
    onnx.save(proto, path)
    check_model_file(path)
    check_stepping(model, path)


def write_stream_metadata(proto, metadata: ModelMetadata, num_layers: int, hidden_size: int) -> None:
    """The plain model's props plus :data:`STATEFUL_PROP` (the state's shape)."""
    set_metadata(proto, metadata)
    entry = proto.metadata_props.add()
    entry.key, entry.value = STATEFUL_PROP, json.dumps({"num_layers": num_layers, "hidden_size": hidden_size})


def quantize_stream_onnx(src: str, dst: str, metadata: ModelMetadata, num_layers: int, hidden_size: int) -> None:
    """Dynamic int8 of the stateful graph (as :func:`quantize_onnx`), with ``metadata`` + state shape."""
    quantize_onnx(src, dst, num_layers)
    import onnx

    proto = onnx.load(dst)
    write_stream_metadata(proto, metadata, num_layers, hidden_size)
    onnx.save(proto, dst)
    check_model_file(dst)


def check_stepping(model: torch.nn.Module, path: str, atol: float = 1e-4) -> None:
    """The stateful graph stepped over a sequence in two chunks (state carried) must give the
    PyTorch model's logits for the whole sequence."""
    from ser_edge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    stepper = OnnxRuntimeBackend(path).stepper()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 23, stepper.n_features, generator=g)
    with torch.no_grad():
        ref = model(x, torch.tensor([23, 23])).numpy()
    state = stepper.zero_state(2)
    _, state = stepper.step(x[:, :9].numpy(), state)
    logits, _ = stepper.step(x[:, 9:].numpy(), state)
    if not np.allclose(logits, ref, atol=atol):
        raise ExportError(f"{path}: stepping the stateful graph differs from the model "
                          f"(max |diff| {np.abs(logits - ref).max():.2e} > {atol})")


def lstm_count(arch: str, num_layers: int) -> int:
    """LSTM ops the legacy exporter emits: one per layer per stack (res_lstm_att: always two
    single-layer LSTMs, whatever ``num_layers`` says; stats_linear: none)."""
    if arch == "stats_linear":
        return 0
    if arch == "res_lstm_att":
        return 2
    return num_layers * (2 if arch == "attn_bilstm" else 1)


def conv_count(model_config: Dict[str, object]) -> int:
    """``Conv`` ops expected for a ``ModelConfig.to_dict()``: conv_lstm's blocks, else none."""
    if model_config.get("arch") != "conv_lstm":
        return 0
    layers = model_config.get("conv_layers")
    return layers if isinstance(layers, int) else 0


__all__: Sequence[str] = (
    "OPSET", "DYNAMIC_AXES", "export_onnx", "quantize_onnx", "write_metadata", "set_metadata",
    "read_metadata_props", "check_symbolic_axes", "check_ops", "check_model_file", "OnnxRunner",
    "lstm_count", "conv_count", "gemm_to_matmul",
)
