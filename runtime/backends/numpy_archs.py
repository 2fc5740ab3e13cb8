"""Pure-numpy inference for the architectures beyond :mod:`.numpy_lstm`'s two: ``res_lstm_att``
(ResLSTM-SA) and ``conv_lstm`` (Conv1d front-end + LSTM), built on its LSTM, and ``stats_linear``
(masked mean and std of every feature -> linear, no recurrence), float32, numpy only.

Their BatchNorms are folded at export time (``ser_edge.export.numpy_export``), so the file holds
no running statistics: ``res_lstm_att`` keeps its first BatchNorm as a per-feature affine
(``bn1.scale``, ``bn1.shift``) and has the second folded into the head; ``conv_lstm`` has each
BatchNorm folded into the convolution before it. Padding is handled as in ``ser_edge.models``:
convolutions see zeros beyond each item's length (re-zeroed after every block), and the
attention softmax and mean pooling run over the valid frames only.

The functions register themselves in :data:`.numpy_lstm.ARCHITECTURES` (the table the numpy
backend dispatches on) and their weight loaders in :data:`.numpy_lstm.ARCH_WEIGHTS`;
``numpy_lstm`` imports this module last, so either import order gives the complete tables.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import numpy as np

from .numpy_lstm import ARCH_WEIGHTS, ARCHITECTURES, LSTMStack, _stack, _weight, lstm_stack

#: npz header key of ``conv_lstm`` files: the number of conv blocks (``conv0`` .. ``conv{N-1}``).
CONV_LAYERS_KEY = "__conv_layers__"
#: Same "large finite negative" as the PyTorch attention mask (never NaN).
MASK_VALUE = np.float32(-1e9)
#: stats_linear's ``sqrt(var + STD_EPS)`` (``ser_edge.models.StatsLinear``): keeps the gradient
#: finite for a constant feature in training; part of the model's math, so the runtime's too.
STD_EPS = 1e-8


def valid_mask(lengths: np.ndarray, t: int) -> np.ndarray:
    """``(B,) -> (B, t) bool``: True on valid frames (mirrors ``ser_edge.models.valid_mask``)."""
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


def masked_softmax_pool(scores: np.ndarray, h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Attention pooling over valid frames: ``scores (B, T)``, ``h (B, T, D)``, ``mask (B, T)``
    -> ``(B, D)`` float32."""
    scores = np.where(mask, scores, MASK_VALUE)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("bt,btd->bd", weights, h)


def conv1d_same(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Centred 1-D convolution over time with zero padding (PyTorch ``Conv1d(padding=K // 2)``),
    as one im2col matmul. ``x (B, T, C_in)``, ``w (K * C_in, C_out)`` (rows ordered tap-major,
    see :func:`conv_weight`), ``b (C_out,)`` -> ``(B, T, C_out)`` float32."""
    bsz, t, c_in = x.shape
    k = w.shape[0] // c_in
    xp = np.pad(x, ((0, 0), (k // 2, k // 2), (0, 0)))
    cols = np.concatenate([xp[:, j:j + t] for j in range(k)], axis=-1)  # (B, T, K * C_in)
    return cols @ w + b


def conv_weight(w: np.ndarray) -> np.ndarray:
    """PyTorch ``Conv1d.weight (C_out, C_in, K)`` -> the ``(K * C_in, C_out)`` matrix
    :func:`conv1d_same` multiplies by (row ``j * C_in + c`` = tap ``j`` of input channel ``c``)."""
    c_out, c_in, k = w.shape
    return np.ascontiguousarray(np.transpose(w, (2, 1, 0)).reshape(k * c_in, c_out), dtype=np.float32)


def res_lstm_attention(x: np.ndarray, lengths: np.ndarray, w: Mapping[str, Any]) -> np.ndarray:
    """``ResLSTMAttention``: ``(x + LSTM_F(x)) * scale + shift`` -> LSTM_H -> masked soft
    attention -> head (second BatchNorm folded in). ``(B, T, F) -> (B, C)``."""
    r = lstm_stack(x[None], w["lstm1"])[0]  # unidirectional: padding never reaches valid frames
    h = lstm_stack(((x + r) * w["bn1_scale"] + w["bn1_shift"])[None], w["lstm2"])[0]  # (B, T, H)
    pooled = masked_softmax_pool(h @ w["att_w"] + w["att_b"], h, valid_mask(lengths, x.shape[1]))
    return pooled @ w["head_w"] + w["head_b"]


def conv_lstm(x: np.ndarray, lengths: np.ndarray, w: Mapping[str, Any]) -> np.ndarray:
    """``ConvLSTM``: [conv (BatchNorm folded) -> ReLU -> re-zero padding] x N -> LSTM stack ->
    [masked attention pool, masked mean] -> head. ``(B, T, F) -> (B, C)``."""
    mask = valid_mask(lengths, x.shape[1])
    keep = mask[..., None].astype(np.float32)
    x = x * keep  # whatever the padding holds, the convolutions see zeros there
    for cw, cb in w["convs"]:
        x = np.maximum(conv1d_same(x, cw, cb), 0.0) * keep
    h = lstm_stack(x[None], w["lstm"])[0]  # (B, T, H)
    att = masked_softmax_pool(h @ w["att_w"] + w["att_b"], h, mask)
    mean = (h * keep).sum(axis=1) / np.asarray(lengths, np.float32)[:, None]
    return np.concatenate([att, mean], axis=-1) @ w["head_w"] + w["head_b"]


def stats_linear(x: np.ndarray, lengths: np.ndarray, w: Mapping[str, Any]) -> np.ndarray:
    """``StatsLinear``: ``[mean, sqrt(var + 1e-8)]`` of each feature over the valid frames
    (population variance) -> head. ``(B, T, F) -> (B, C)``."""
    keep = valid_mask(lengths, x.shape[1])[..., None].astype(np.float32)  # (B, T, 1)
    n = np.asarray(lengths, np.float32)[:, None]  # (B, 1)
    x = x * keep  # whatever the padding holds, it adds nothing
    mean = x.sum(axis=1) / n  # (B, F)
    var = np.square((x - mean[:, None]) * keep).sum(axis=1) / n
    return np.concatenate([mean, np.sqrt(var + np.float32(STD_EPS))], axis=-1) @ w["head_w"] + w["head_b"]


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _attention_and_head(arrays: Mapping[str, np.ndarray], hidden: int, width: int,
                        n_classes: int) -> Dict[str, np.ndarray]:
    """``att.W (1, H)``, ``att.b (1,)``, ``head.W (C, width)``, ``head.b (C,)`` -> transposed."""
    return {"att_w": _f32(_weight(arrays, "att.W", (1, hidden))[0]),
            "att_b": _f32(_weight(arrays, "att.b", (1,))[0]),
            "head_w": _f32(_weight(arrays, "head.W", (n_classes, width)).T),
            "head_b": _f32(_weight(arrays, "head.b", (n_classes,)))}


def res_lstm_att_weights(arrays: Mapping[str, np.ndarray], num_layers: int, n_features: int,
                         n_classes: int) -> Dict[str, Any]:
    """npz arrays -> weights of :func:`res_lstm_attention`. Both stacks have one layer
    (``num_layers`` must say 1). Raises KeyError / ValueError on a bad array."""
    if num_layers != 1:
        raise ValueError(f"res_lstm_att has single-layer LSTMs, the file says {num_layers} layers")
    hidden = _weight(arrays, "lstm2.l0.W_hh", (-1, -1)).shape[1]
    return {"lstm1": _stack(arrays, ("lstm1",), 1, n_features, n_features),
            "bn1_scale": _f32(_weight(arrays, "bn1.scale", (n_features,))),
            "bn1_shift": _f32(_weight(arrays, "bn1.shift", (n_features,))),
            "lstm2": _stack(arrays, ("lstm2",), 1, n_features, hidden),
            **_attention_and_head(arrays, hidden, hidden, n_classes)}


def conv_lstm_weights(arrays: Mapping[str, np.ndarray], num_layers: int, n_features: int,
                      n_classes: int) -> Dict[str, Any]:
    """npz arrays -> weights of :func:`conv_lstm`; the block count comes from
    :data:`CONV_LAYERS_KEY`. Raises KeyError / ValueError on a bad array."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    n_conv = int(arrays[CONV_LAYERS_KEY].item())
    if not 1 <= n_conv <= 64:
        raise ValueError(f"{CONV_LAYERS_KEY} must be in [1, 64], got {n_conv}")
    convs, c_in = [], n_features
    for i in range(n_conv):
        cw = _weight(arrays, f"conv{i}.W", (-1, c_in, -1))
        if min(cw.shape) < 1 or cw.shape[2] % 2 == 0:
            raise ValueError(f"conv{i}.W is {cw.shape}: needs >= 1 channel and an odd (centred) kernel")
        convs.append((conv_weight(cw), _f32(_weight(arrays, f"conv{i}.b", (cw.shape[0],)))))
        c_in = cw.shape[0]
    hidden = _weight(arrays, "lstm.l0.W_hh", (-1, -1)).shape[1]
    layers: LSTMStack = _stack(arrays, ("lstm",), num_layers, c_in, hidden)
    return {"convs": convs, "lstm": layers, **_attention_and_head(arrays, hidden, 2 * hidden, n_classes)}


def stats_linear_weights(arrays: Mapping[str, np.ndarray], num_layers: int, n_features: int,
                         n_classes: int) -> Dict[str, Any]:
    """npz arrays -> weights of :func:`stats_linear`: ``head.W (C, 2F)``, ``head.b (C,)``; the file
    has no LSTM (``num_layers`` must say 0). Raises KeyError / ValueError on a bad array."""
    if num_layers != 0:
        raise ValueError(f"stats_linear has no LSTM, the file says {num_layers} layers")
    return {"head_w": _f32(_weight(arrays, "head.W", (n_classes, 2 * n_features)).T),
            "head_b": _f32(_weight(arrays, "head.b", (n_classes,)))}


ARCHITECTURES.update(res_lstm_att=res_lstm_attention, conv_lstm=conv_lstm, stats_linear=stats_linear)
ARCH_WEIGHTS.update(res_lstm_att=res_lstm_att_weights, conv_lstm=conv_lstm_weights,
                    stats_linear=stats_linear_weights)
