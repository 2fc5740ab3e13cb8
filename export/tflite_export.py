"""TFLite export: the PyTorch model rebuilt as a TensorFlow graph with the checkpoint's weights,
converted with ``tf.lite.TFLiteConverter.from_concrete_functions``; int8 = dynamic-range
quantisation (int8 weights, float activations quantised on the fly; no representative data).

Why not Keras layers: a Keras 3 ``LSTM`` converts its time loop through ``TensorList`` ops, and
the converter can only lower those with a static element shape, i.e. a fixed batch size
(``'tf.TensorListReserve' op requires element_shape to be static``). The fused
``UNIDIRECTIONAL_SEQUENCE_LSTM`` op is only emitted for tf_keras 2 layers and also needs a fixed
batch, and keeps its state in variable tensors between invocations. So the LSTM stacks here are
a plain ``tf.while_loop`` over blocks of :data:`BLOCK` time steps (see :func:`_tf_lstm_stack`);
outputs go into a preallocated buffer with ``XlaDynamicUpdateSlice``, which converts to the
builtin ``DYNAMIC_UPDATE_SLICE`` (jax2tf emits the same op). The result has builtin ops only
(``WHILE``, ``FULLY_CONNECTED``, ``GATHER``, ...) and a dynamic batch *and* time axis; its
numerics are PyTorch's to float rounding (max |logit diff| ~1e-7 on random weights).
res_lstm_att and conv_lstm use the BatchNorm-folded weights of the npz
(:func:`ser_edge.export.numpy_export.folded_arrays`, one folding for both formats); conv_lstm's
blocks are ``tf.nn.conv1d`` (builtin ``CONV_2D``, int8 weights after dynamic-range quantisation).
stats_linear is masked mean/std pooling (``SUM``, ``SQRT``, ...) and one ``FULLY_CONNECTED``, no
loop. Dynamic-range int8 leaves weight tensors under 1024 values in float32 (the converter's
fixed threshold, not settable from Python), so stats_linear's head ``(C, 2F)`` is int8 only when
``2F * C >= 1024`` (e.g. 120 features x 8 classes); a smaller one's int8 file computes as fp32.

Graph contract (:mod:`ser_edge.runtime.metadata`): inputs ``features`` ``(batch, time, n_mfcc)
float32`` and ``lengths`` ``(batch,) int64``, output ``logits`` ``(batch, n_classes) float32``.

Metadata: TFLite has no free-form key/value metadata that interpreters expose, so the
:meth:`ModelMetadata.to_props` dict is written twice: as JSON in the flatbuffer's ``metadata``
table under the name ``"ser_edge"`` (read back without TensorFlow by
:func:`ser_edge.runtime.backends.litert.read_embedded_props`) and as a ``<file>.json`` sidecar.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ser_edge.checkpoint import Checkpoint
from ser_edge.runtime.backends.litert import (
    DIGEST_KEY,
    METADATA_NAME,
    TFLiteInterpreter,
    file_digest,
    load_verified,
    read_embedded_props,
    sidecar_path,
)
from ser_edge.runtime.backends.numpy_archs import CONV_LAYERS_KEY, STD_EPS
from ser_edge.runtime.io import atomic_write_bytes, atomic_write_json
from ser_edge.runtime.metadata import INPUT_FEATURES, INPUT_LENGTHS, OUTPUT_LOGITS, PREFIX, SelfTest

from .errors import ExportError
from .numpy_export import FOLDED_ARCHS, folded_arrays

FP32_FILE = "model.tflite"
INT8_FILE = "model.int8.tflite"
INT8_QUANTIZATION = "dynamic-int8"
#: LSTM steps unrolled per loop iteration (see _tf_lstm_stack).
BLOCK = 8
#: Same "large finite negative" as the PyTorch model's attention mask (never NaN, survives int8).
MASK_VALUE = -1e9
TF_MISSING = "TFLite export needs tensorflow: pip install 'ser-edge[tflite-export]'"

#: ``(kernel (F, 4H), recurrent_kernel (H, 4H), bias (4H,))`` per layer; gates i, f, g, o.
LayerWeights = Tuple[np.ndarray, np.ndarray, np.ndarray]


class TFLiteExportError(ExportError):
    """TensorFlow is missing, or conversion / the written file failed a check."""


def import_tensorflow() -> Any:
    """``tensorflow``, imported quietly (its C++ log chatter only), or :class:`TFLiteExportError`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise TFLiteExportError(TF_MISSING) from None
    return tf


def _xla_ops() -> Any:
    """TensorFlow's XLA op wrappers (for ``dynamic_update_slice``; jax2tf relies on the same module)."""
    try:
        from tensorflow.compiler.tf2xla.python import xla
    except ImportError as e:
        raise TFLiteExportError(f"this TensorFlow build lacks its XLA ops ({e}); {TF_MISSING}") from None
    return xla


# --- weights ------------------------------------------------------------------------------------

def _numpy_weights(ckpt: Checkpoint) -> Dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in ckpt.state_dict.items()}


def lstm_stack_weights(w: Mapping[str, np.ndarray], stack: str, num_layers: int) -> List[LayerWeights]:
    """PyTorch ``nn.LSTM`` params of module ``stack`` -> right-multiplied kernels. The two PyTorch
    biases only ever appear summed, so they are folded into one."""
    return [(np.ascontiguousarray(w[f"{stack}.weight_ih_l{k}"].T),
             np.ascontiguousarray(w[f"{stack}.weight_hh_l{k}"].T),
             w[f"{stack}.bias_ih_l{k}"] + w[f"{stack}.bias_hh_l{k}"])
            for k in range(num_layers)]


# --- TensorFlow graph (tf is passed in: the module imports it lazily) ----------------------------

def _tf_lstm_cell(tf: Any, xw_t: Any, h: Any, c: Any, recurrent: Any) -> Tuple[Any, Any]:
    """One step; ``xw_t (B, 4H)`` is the input projection with both biases. -> ``(h, c)``."""
    i, f, g, o = tf.split(xw_t + tf.matmul(h, recurrent), 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c), c


def _tf_lstm_stack(tf: Any, features: Any, layers: Sequence[LayerWeights], last_step: Any = None) -> Any:
    """Stacked LSTM layers (zero initial state, no dropout at inference) over ``features (B, T, F)``
    -> the top layer's outputs ``(B, T, H)``, or with ``last_step (B,) int32`` only its hidden
    state at that step, ``(B, H)``.

    One while loop over blocks of :data:`BLOCK` time steps, unrolled in the body, each block
    running through every layer. Why: TFLite copies a loop variable that the body changes on
    every iteration (DYNAMIC_UPDATE_SLICE is not in place on it, and WHILE copies body outputs
    back to inputs), so writing each step into a ``(T, B, H)`` buffer costs O(T^2). Here only
    the top layer is buffered, once per block (and not at all with ``last_step``), and the loop
    overhead is paid once per block. T is padded with zero frames to a multiple of BLOCK; the
    recurrence only runs forward, so the extra steps never reach a kept output.
    """
    xla = _xla_ops()
    consts = [tuple(tf.constant(a) for a in weights) for weights in layers]
    hidden = layers[0][1].shape[0]
    batch, steps, n_in = tf.shape(features)[0], tf.shape(features)[1], layers[0][0].shape[0]
    n_blocks = (steps + BLOCK - 1) // BLOCK
    x = tf.pad(features, tf.stack([[0, 0], [0, n_blocks * BLOCK - steps], [0, 0]]))
    x = tf.reshape(tf.transpose(x, [1, 0, 2]), [n_blocks, BLOCK, batch, n_in])  # time-major blocks

    def block(b: Any, hs: List[Any], cs: List[Any], acc: Any) -> Tuple[Any, List[Any], List[Any], Any]:
        seq, hs, cs = x[b], list(hs), list(cs)  # (BLOCK, B, F)
        for k, (kernel, recurrent, bias) in enumerate(consts):
            # The input projection of the whole block in one matmul, then the recurrence.
            xw = tf.matmul(tf.reshape(seq, [-1, kernel.shape[0]]), kernel) + bias
            outs = []
            for xw_t in tf.unstack(tf.reshape(xw, [BLOCK, batch, 4 * hidden]), num=BLOCK):
                hs[k], cs[k] = _tf_lstm_cell(tf, xw_t, hs[k], cs[k], recurrent)
                outs.append(hs[k])
            seq = tf.stack(outs)  # (BLOCK, B, H)
        if last_step is None:
            acc = xla.dynamic_update_slice(acc, seq, tf.stack([b * BLOCK, 0, 0]))
        else:  # at most one step of all blocks matches per item: adding zeros elsewhere is exact
            hit = tf.equal(tf.expand_dims(tf.range(BLOCK) + b * BLOCK, 1), tf.expand_dims(last_step, 0))
            acc = acc + tf.reduce_sum(tf.where(tf.expand_dims(hit, -1), seq, 0.0), axis=0)
        return b + 1, hs, cs, acc

    zeros = tf.zeros([batch, hidden])
    state = tf.TensorShape([None, hidden])
    if last_step is None:
        acc, acc_shape = tf.zeros([n_blocks * BLOCK, batch, hidden]), tf.TensorShape([None, None, hidden])
    else:
        acc, acc_shape = zeros, state
    _, _, _, acc = tf.while_loop(
        lambda b, *_: b < n_blocks, block, [tf.constant(0), [zeros] * len(layers), [zeros] * len(layers), acc],
        shape_invariants=[tf.TensorShape([]), [state] * len(layers), [state] * len(layers), acc_shape])
    return acc if last_step is not None else tf.transpose(acc[:steps], [1, 0, 2])


def _tf_linear(tf: Any, x: Any, weight: np.ndarray, bias: np.ndarray | None) -> Any:
    """PyTorch ``nn.Linear`` over the last axis of ``x`` (any rank >= 2)."""
    y = tf.matmul(x, tf.constant(np.ascontiguousarray(weight.T)))
    return y if bias is None else y + tf.constant(bias)


def _tf_reverse_index(tf: Any, lengths: Any, steps: Any) -> Any:
    """``(B, T) int32``: reverses each item within its length, padding stays (models.reverse_index)."""
    # Indexing with None becomes a StridedSlice with new_axis_mask, which TFLite lacks: expand_dims.
    t = tf.expand_dims(tf.range(steps), 0)
    rev = tf.expand_dims(lengths, 1) - 1 - t
    return tf.where(rev >= 0, rev, t)


def _tf_lstm_classifier(tf: Any, w: Mapping[str, np.ndarray], num_layers: int,
                        features: Any, lengths: Any) -> Any:
    """models.LSTMClassifier: the head on the hidden state at the last valid frame."""
    last = _tf_lstm_stack(tf, features, lstm_stack_weights(w, "lstm", num_layers),
                          last_step=tf.maximum(lengths - 1, 0))  # (B, H)
    return _tf_linear(tf, last, w["head.weight"], w["head.bias"])


def _tf_attn_bilstm(tf: Any, w: Mapping[str, np.ndarray], num_layers: int,
                    features: Any, lengths: Any) -> Any:
    """models.AttentionBiLSTM: backward stack on the length-reversed input, masked attention."""
    steps = tf.shape(features)[1]
    rev = _tf_reverse_index(tf, lengths, steps)
    h_f = _tf_lstm_stack(tf, features, lstm_stack_weights(w, "fwd", num_layers))
    h_b = _tf_lstm_stack(tf, tf.gather(features, rev, batch_dims=1), lstm_stack_weights(w, "bwd", num_layers))
    h = tf.concat([h_f, tf.gather(h_b, rev, batch_dims=1)], axis=-1)  # (B, T, 2H)
    proj = tf.tanh(_tf_linear(tf, h, w["att_proj.weight"], w["att_proj.bias"]))
    scores = tf.squeeze(_tf_linear(tf, proj, w["att_score.weight"], None), -1)  # (B, T)
    valid = tf.expand_dims(tf.range(steps), 0) < tf.expand_dims(lengths, 1)
    weights = tf.nn.softmax(tf.where(valid, scores, MASK_VALUE), axis=1)
    pooled = tf.reduce_sum(tf.expand_dims(weights, -1) * h, axis=1)  # (B, 2H)
    return _tf_linear(tf, pooled, w["head.weight"], w["head.bias"])


def _tf_valid(tf: Any, lengths: Any, steps: Any) -> Any:
    """``(B, T) bool``: True on valid frames (models.valid_mask)."""
    return tf.expand_dims(tf.range(steps), 0) < tf.expand_dims(lengths, 1)


def _tf_masked_softmax_pool(tf: Any, scores: Any, h: Any, valid: Any) -> Any:
    """models.masked_softmax_pool: ``scores (B, T)``, ``h (B, T, D)``, ``valid (B, T)`` -> ``(B, D)``."""
    weights = tf.nn.softmax(tf.where(valid, scores, MASK_VALUE), axis=1)
    return tf.reduce_sum(tf.expand_dims(weights, -1) * h, axis=1)


def _tf_res_lstm_att(tf: Any, w: Mapping[str, np.ndarray], num_layers: int, features: Any, lengths: Any) -> Any:
    """models.ResLSTMAttention with the BatchNorms folded as in the npz (``bn1.scale``/``bn1.shift``,
    the second inside ``head.W``/``head.b``); both LSTMs have one layer whatever ``num_layers`` says."""
    r = _tf_lstm_stack(tf, features, lstm_stack_weights(w, "lstm1", 1))  # unidirectional: padding stays behind
    x = (features + r) * tf.constant(w["bn1.scale"]) + tf.constant(w["bn1.shift"])
    h = _tf_lstm_stack(tf, x, lstm_stack_weights(w, "lstm2", 1))  # (B, T, H)
    scores = tf.squeeze(_tf_linear(tf, h, w["att.W"], w["att.b"]), -1)
    pooled = _tf_masked_softmax_pool(tf, scores, h, _tf_valid(tf, lengths, tf.shape(features)[1]))
    return _tf_linear(tf, pooled, w["head.W"], w["head.b"])


def _tf_conv_lstm(tf: Any, w: Mapping[str, np.ndarray], num_layers: int, features: Any, lengths: Any) -> Any:
    """models.ConvLSTM with each BatchNorm folded into its conv (``conv{i}.W``/``conv{i}.b``, as in
    the npz): ``tf.nn.conv1d`` with SAME padding is PyTorch's centred ``Conv1d(padding=K // 2)``
    (both cross-correlate); zeroing the padding before and after every block makes a padded
    item see exactly the zeros an unbatched one does."""
    valid = _tf_valid(tf, lengths, tf.shape(features)[1])
    keep = tf.expand_dims(tf.cast(valid, tf.float32), -1)  # (B, T, 1)
    x = features * keep
    for i in range(int(w[CONV_LAYERS_KEY])):
        filters = np.ascontiguousarray(np.transpose(w[f"conv{i}.W"], (2, 1, 0)))  # (K, C_in, C_out)
        x = tf.nn.relu(tf.nn.conv1d(x, tf.constant(filters), stride=1, padding="SAME") + w[f"conv{i}.b"]) * keep
    h = _tf_lstm_stack(tf, x, lstm_stack_weights(w, "lstm", num_layers))  # (B, T, H)
    att = _tf_masked_softmax_pool(tf, tf.squeeze(_tf_linear(tf, h, w["att.W"], w["att.b"]), -1), h, valid)
    mean = tf.reduce_sum(h * keep, axis=1) / tf.expand_dims(tf.cast(lengths, tf.float32), 1)
    return _tf_linear(tf, tf.concat([att, mean], axis=-1), w["head.W"], w["head.b"])


def _tf_stats_linear(tf: Any, w: Mapping[str, np.ndarray], num_layers: int, features: Any, lengths: Any) -> Any:
    """models.StatsLinear: ``[mean, sqrt(var + 1e-8)]`` of each feature over the valid frames
    (population variance; padding multiplied by zero first, so junk there adds nothing) -> head.
    No recurrence, hence no ``WHILE``; ``num_layers`` is unused."""
    keep = tf.expand_dims(tf.cast(_tf_valid(tf, lengths, tf.shape(features)[1]), tf.float32), -1)  # (B, T, 1)
    n = tf.expand_dims(tf.cast(lengths, tf.float32), 1)  # (B, 1)
    x = features * keep
    mean = tf.reduce_sum(x, axis=1) / n  # (B, F)
    var = tf.reduce_sum(tf.square((x - tf.expand_dims(mean, 1)) * keep), axis=1) / n
    stats = tf.concat([mean, tf.sqrt(var + STD_EPS)], axis=-1)  # (B, 2F)
    return _tf_linear(tf, stats, w["head.weight"], w["head.bias"])


def tf_model(tf: Any, ckpt: Checkpoint) -> Any:
    """The model as a ``tf.function`` with dynamic batch and time:
    ``features (None, None, F) float32, lengths (None,) int64 -> logits (None, C) float32``."""
    cfg = ckpt.model_config
    w = _numpy_weights(ckpt)
    if cfg.arch in FOLDED_ARCHS:  # BatchNorms folded exactly as for the npz (one implementation)
        w.update(folded_arrays(ckpt.state_dict, cfg))
    body = {"lstm": _tf_lstm_classifier, "attn_bilstm": _tf_attn_bilstm, "res_lstm_att": _tf_res_lstm_att,
            "conv_lstm": _tf_conv_lstm, "stats_linear": _tf_stats_linear}[cfg.arch]
    signature = [tf.TensorSpec([None, None, cfg.n_features], tf.float32, name=INPUT_FEATURES),
                 tf.TensorSpec([None], tf.int64, name=INPUT_LENGTHS)]

    @tf.function(input_signature=signature, autograph=False)
    def model(features: Any, lengths: Any) -> Any:
        # int32 indices: TFLite's GATHER / RANGE / comparison kernels are int32-first.
        return {OUTPUT_LOGITS: body(tf, w, cfg.num_layers, features, tf.cast(lengths, tf.int32))}

    return model


def convert(ckpt: Checkpoint, quantize: bool) -> bytes:
    """Checkpoint -> TFLite flatbuffer (builtin ops only, output named ``logits``), without
    ser-edge metadata."""
    tf = import_tensorflow()
    model = tf_model(tf, ckpt)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops on the Pi
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no dataset: dynamic-range int8
    try:
        model = bytes(converter.convert())
    except Exception as e:  # ConverterError and friends carry MLIR diagnostics; keep one line
        raise TFLiteExportError(f"TFLite conversion failed: {str(e).strip().splitlines()[0][:300]}") from None
    return edit_flatbuffer(model, _name_output)


# --- flatbuffer post-processing ---------------------------------------------------------------

def edit_flatbuffer(model: bytes, change: Callable[[Any, Any], None]) -> bytes:
    """Apply ``change(model_object, schema)`` to a flatbuffer through the TFLite object API
    (``tensorflow.lite.tools.flatbuffer_utils``; ``model_object`` is a ``schema.ModelT``)."""
    import_tensorflow()
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    change(obj, schema)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def _name_output(obj: Any, schema: Any) -> None:
    """The converter names the output after the graph node (``Identity``); the contract says ``logits``."""
    graph = obj.subgraphs[0]
    if len(graph.outputs) != 1:
        raise TFLiteExportError(f"converted model has {len(graph.outputs)} outputs, expected 1")
    graph.tensors[graph.outputs[0]].name = OUTPUT_LOGITS.encode()


def embed_props(model: bytes, props: Mapping[str, str]) -> bytes:
    """``model`` with ``props`` as JSON in the flatbuffer metadata entry :data:`METADATA_NAME`
    (replacing an older one)."""
    def change(obj: Any, schema: Any) -> None:
        for old in [m for m in (obj.metadata or []) if m.name in (METADATA_NAME, METADATA_NAME.encode())]:
            obj.buffers[old.buffer].data = None  # orphaned; drop the bytes
            obj.metadata.remove(old)
        buf = schema.BufferT()
        buf.data = np.frombuffer(json.dumps(dict(props), sort_keys=True).encode("utf-8"), dtype=np.uint8)
        obj.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(obj.buffers) - 1
        obj.metadata = list(obj.metadata or []) + [entry]

    return edit_flatbuffer(model, change)


def write_model(path: Path, model: bytes, props: Mapping[str, str]) -> None:
    """Write ``model`` with ``props`` embedded, plus the ``<path>.json`` sidecar (both atomic):
    ``props`` and the file's sha256 (:data:`DIGEST_KEY`, checked by the runtime before LiteRT
    parses the file). Checks that the embedded props read back as ``props``."""
    data = embed_props(model, props)
    atomic_write_bytes(path, data)
    atomic_write_json(sidecar_path(str(path)), {**props, DIGEST_KEY: file_digest(data)})
    embedded = read_embedded_props(Path(path).read_bytes(), str(path))
    if embedded != dict(props):
        raise TFLiteExportError(f"{path}: embedded metadata does not round-trip")


def read_metadata_props(path: str | Path) -> Dict[str, str]:
    """The ser-edge props embedded in a ``.tflite`` file (``{}`` when it has none)."""
    return read_embedded_props(Path(path).read_bytes(), str(path)) or {}


@functools.lru_cache(maxsize=4)
def _interpreter(path: str, threads: int, mtime_ns: int, size: int) -> TFLiteInterpreter:
    """One interpreter per file version: parity reports call :func:`run_tflite` once per clip.
    The file is checked against its sidecar's sha256 first, as the runtime does."""
    return TFLiteInterpreter(path, threads, content=load_verified(path))


def run_tflite(path: str | Path, features: np.ndarray, lengths: np.ndarray, threads: int = 1) -> np.ndarray:
    """Run a ``.tflite`` model: ``features (B, T, F) float32, lengths (B,) int64 -> logits (B, C)
    float32`` (no metadata needed, for parity reports). The interpreter is cached per file."""
    st = os.stat(path)
    return _interpreter(os.fspath(path), int(threads), st.st_mtime_ns, st.st_size)(features, lengths)


def op_types(path: str | Path) -> List[str]:
    """Sorted distinct op names over all subgraphs of a ``.tflite`` file, e.g. ``["FULLY_CONNECTED",
    "WHILE"]``; custom ops (``Flex*`` included) by their custom code."""
    import_tensorflow()
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    found = set()
    for graph in obj.subgraphs:
        for op in graph.operators:
            code = obj.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)  # the schema's rule
            found.add(code.customCode.decode() if builtin == schema.BuiltinOperator.CUSTOM
                      else names.get(builtin, str(builtin)))
    return sorted(found)


def _int8_props(props: Mapping[str, str], model: bytes, ckpt: Checkpoint) -> Dict[str, str]:
    """Props for the int8 file: quantisation tag, and the self-test tolerance widened by the error
    this int8 model actually shows on the self-test clip (export.common.int8_selftest)."""
    from .common import int8_selftest, selftest_input

    out = dict(props)
    out[PREFIX + "quantization"] = INT8_QUANTIZATION
    if PREFIX + "selftest" in props:
        selftest = SelfTest.from_json(props[PREFIX + "selftest"])
        features, lengths = selftest_input(selftest, ckpt.feature_config)
        logits = TFLiteInterpreter.from_bytes(model)(features, lengths)[0]
        out[PREFIX + "selftest"] = int8_selftest(selftest, logits).to_json()
    return out


def default_props(ckpt: Checkpoint) -> Dict[str, str]:
    """Metadata when the caller gives none: the checkpoint's, with a self-test on the standard
    speech-like clip (what :func:`ser_edge.export.export_all` uses without a held-out waveform)."""
    from .common import SELFTEST_SECONDS, build_metadata, make_selftest, speechlike

    clip = speechlike(SELFTEST_SECONDS, ckpt.feature_config.sample_rate)
    return build_metadata(ckpt, make_selftest(ckpt.build_model(), ckpt.feature_config, clip)).to_props()


def export_tflite(ckpt: Checkpoint, out_dir: str | Path, quantize: bool = False,
                  metadata_props: Optional[Mapping[str, str]] = None) -> List[Path]:
    """Write ``model.tflite`` (fp32) and, with ``quantize``, ``model.int8.tflite``, each with
    ``metadata_props`` (default: :func:`default_props`) embedded and in a ``<file>.json`` sidecar.
    The int8 file's props say ``dynamic-int8`` and carry a self-test tolerance widened by its
    measured error. Returns every file written: ``[model.tflite, model.tflite.json, ...]``.
    Raises :class:`TFLiteExportError` (tensorflow missing, conversion failed)."""
    out_dir = Path(out_dir)
    props = dict(metadata_props) if metadata_props is not None else default_props(ckpt)
    written = []
    for name, quantized in ((FP32_FILE, False), (INT8_FILE, True))[:2 if quantize else 1]:
        model = convert(ckpt, quantize=quantized)
        path = out_dir / name
        write_model(path, model, _int8_props(props, model, ckpt) if quantized else props)
        written += [path, Path(sidecar_path(str(path)))]
    return written


__all__: Sequence[str] = (
    "FP32_FILE", "INT8_FILE", "INT8_QUANTIZATION", "TFLiteExportError", "import_tensorflow",
    "lstm_stack_weights", "tf_model", "convert", "edit_flatbuffer", "embed_props", "write_model",
    "read_metadata_props", "run_tflite", "op_types", "default_props", "export_tflite",
)
