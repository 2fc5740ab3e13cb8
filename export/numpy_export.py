"""``model.npz`` for the runtime's pure-numpy LSTM backend (no onnxruntime, no torch).

Layout (``np.load(path, allow_pickle=False)``; every weight float32, C-contiguous)::

    __format__          str   "ser-edge-npz"
    __format_version__  int64 1
    __arch__            str   "lstm" | "attn_bilstm" | "res_lstm_att" | "conv_lstm" | "stats_linear"
    __num_layers__      int64 L, layers per LSTM stack (1 for res_lstm_att, 0 for stats_linear)
    __metadata__        str   JSON object: ModelMetadata.to_props() (ser_edge.feature_config, ...)

    per stack S and layer k in 0..L-1   (S = "lstm" for lstm and conv_lstm; "fwd" and "bwd" for
                                         attn_bilstm; "lstm1" (H = F) and "lstm2" for res_lstm_att)
    S.l{k}.W_ih         (4H, F_k)  input weights, F_0 = the stack's input width, F_k = H for k > 0
    S.l{k}.W_hh         (4H, H)    recurrent weights
    S.l{k}.b_ih         (4H,)
    S.l{k}.b_hh         (4H,)

    arch "lstm"
    head.W              (C, H)     head.b  (C,)

    arch "attn_bilstm"
    att_proj.W          (H, 2H)    att_proj.b  (H,)
    att_score.W         (1, H)     (no bias)
    head.W              (C, 2H)    head.b  (C,)

    arch "res_lstm_att"  (F = n_features; both BatchNorms folded at export, eval-mode statistics)
    bn1.scale           (F,)       bn1.shift  (F,)   the first BatchNorm as an affine map
    att.W               (1, H)     att.b  (1,)
    head.W              (C, H)     head.b  (C,)      second BatchNorm folded in: W * s2, b + W @ t2

    arch "conv_lstm"  (N conv blocks of kernel K (odd) and Cc channels; stack "lstm" reads Cc)
    __conv_layers__     int64 N
    conv{i}.W           (Cc, C_i, K)  C_0 = n_features, C_i = Cc: Conv1d weight, BatchNorm folded
    conv{i}.b           (Cc,)         (W * s[:, None, None], b * s + t)
    att.W               (1, H)     att.b  (1,)
    head.W              (C, 2H)    head.b  (C,)

    arch "stats_linear"  (no LSTM stack)
    head.W              (C, 2F)    head.b  (C,)      columns 0..F-1 read the means, F..2F-1 the stds

Semantics (PyTorch's; rows of the 4H axis are the gates in the order i, f, g, o)::

    LSTM layer, h_0 = c_0 = 0, over t = 0..T-1 of its input x:
        z   = W_ih @ x_t + b_ih + W_hh @ h_{t-1} + b_hh          (4H,)
        i, f, g, o = z[0:H], z[H:2H], z[2H:3H], z[3H:4H]
        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
        h_t = sigmoid(o) * tanh(c_t)
    A stack feeds each layer's h sequence to the next (no dropout at inference).
    Linear: y = x @ W.T + b.

    arch "lstm":  h = stack "lstm" over features[:n]; logits = head(h[n - 1])   (n = length)
    arch "attn_bilstm", per item with n valid frames x[0:n]:
        hf = stack "fwd" over x[0:n];  hb = reverse(stack "bwd" over reverse(x[0:n]))
        h  = concat(hf, hb, axis=-1)                                      (n, 2H)
        s  = att_score.W @ tanh(att_proj(h)).T                            (n,)
        w  = softmax(s) over the n valid frames; pooled = sum_t w_t h_t   (2H,)
        logits = head(pooled)
    arch "res_lstm_att", per item with n valid frames x[0:n]:
        y  = (x + stack "lstm1" over x) * bn1.scale + bn1.shift;  h = stack "lstm2" over y   (n, H)
        w  = softmax(h @ att.W.T + att.b) over the n frames; logits = head(sum_t w_t h_t)
    arch "conv_lstm", per item with n valid frames x[0:n]:
        N times: x = relu(conv(x)), conv(x)_t = conv.b + sum_j conv.W[:, :, j] @ x_{t + j - K // 2}
                 (frames outside 0..n-1 are zeros)
        h  = stack "lstm" over x                                          (n, H)
        att = softmax-pooled h as for res_lstm_att;  mean = h.mean(axis=0)
        logits = head(concat(att, mean))
    arch "stats_linear", per item with n valid frames x[0:n]:
        mean = x.mean(axis=0);  std = sqrt(((x - mean) ** 2).mean(axis=0) + 1e-8)   (F,) each
        logits = head(concat(mean, std))          (population variance over the n frames)
    Padding frames (t >= n) never influence the result.

Versions: format version 1 gained res_lstm_att, conv_lstm and stats_linear without changing the
two older layouts, so every older file still loads; a runtime that predates them refuses the new
archs with "unknown architecture".
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

import numpy as np
import torch

from ser_edge.models import ModelConfig, build_model
from ser_edge.runtime.backends.numpy_archs import CONV_LAYERS_KEY
from ser_edge.runtime.backends.numpy_lstm import (
    ARCH_KEY,
    FORMAT_KEY,
    METADATA_KEY,
    NPZ_FORMAT,
    NPZ_FORMAT_VERSION,
    NUM_LAYERS_KEY,
    VERSION_KEY,
)
from ser_edge.runtime.metadata import ModelMetadata

from .errors import ExportError

#: Architectures whose non-LSTM weights are written by :func:`folded_arrays` (BatchNorm folded).
FOLDED_ARCHS = ("res_lstm_att", "conv_lstm")


def stacks(arch: str) -> List[str]:
    """Names of the LSTM stacks of ``arch`` (also their ``state_dict`` prefixes); none for stats_linear."""
    return {"attn_bilstm": ["fwd", "bwd"], "res_lstm_att": ["lstm1", "lstm2"],
            "stats_linear": []}.get(arch, ["lstm"])


def stack_layers(cfg: ModelConfig) -> int:
    """Layers per LSTM stack (``__num_layers__``): res_lstm_att ignores ``num_layers``, and
    stats_linear has no stack (0)."""
    return {"res_lstm_att": 1, "stats_linear": 0}.get(cfg.arch, cfg.num_layers)


def folded_arrays(state_dict: Dict[str, torch.Tensor], cfg: ModelConfig) -> Dict[str, np.ndarray]:
    """The non-LSTM weights of res_lstm_att / conv_lstm in the documented layout, each eval-mode
    BatchNorm (``MaskedBatchNorm.affine()``, so exactly the model's own ``scale``/``shift``)
    folded into its neighbour in float64: conv_lstm's into the conv before it, res_lstm_att's
    second into the head after it; res_lstm_att's first stays an affine map (a residual sum
    feeds it). ``{key: float32 array}`` (plus :data:`CONV_LAYERS_KEY` for conv_lstm)."""
    model = build_model(cfg)
    model.load_state_dict(state_dict)
    model.eval()

    def f64(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().double().numpy()

    def f32(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.float32)

    head_w, head_b = f64(model.head.weight), f64(model.head.bias)
    out = {"att.W": f32(f64(model.att.weight)), "att.b": f32(f64(model.att.bias))}
    if cfg.arch == "res_lstm_att":
        scale1, shift1 = model.bn1.affine()
        scale2, shift2 = (f64(a) for a in model.bn2.affine())
        out.update({"bn1.scale": f32(f64(scale1)), "bn1.shift": f32(f64(shift1)),
                    "head.W": f32(head_w * scale2[None, :]), "head.b": f32(head_b + head_w @ shift2)})
    elif cfg.arch == "conv_lstm":
        out[CONV_LAYERS_KEY] = np.array(len(model.convs), dtype=np.int64)
        for i, (conv, bn) in enumerate(zip(model.convs, model.bns)):
            scale, shift = (f64(a) for a in bn.affine())
            out[f"conv{i}.W"] = f32(f64(conv.weight) * scale[:, None, None])
            out[f"conv{i}.b"] = f32(f64(conv.bias) * scale + shift)
        out.update({"head.W": f32(head_w), "head.b": f32(head_b)})
    else:
        raise ValueError(f"{cfg.arch} has no BatchNorm to fold")
    return out


def npz_arrays(state_dict: Dict[str, torch.Tensor], cfg: ModelConfig, metadata: ModelMetadata) -> Dict[str, np.ndarray]:
    """Rename the PyTorch weights to the documented layout. ``{key: array}``."""
    def w(name: str) -> np.ndarray:
        return np.ascontiguousarray(state_dict[name].detach().cpu().numpy(), dtype=np.float32)

    out: Dict[str, np.ndarray] = {
        FORMAT_KEY: np.array(NPZ_FORMAT),
        VERSION_KEY: np.array(NPZ_FORMAT_VERSION, dtype=np.int64),
        ARCH_KEY: np.array(cfg.arch),
        NUM_LAYERS_KEY: np.array(stack_layers(cfg), dtype=np.int64),
        METADATA_KEY: np.array(json.dumps(metadata.to_props(), sort_keys=True)),
    }
    for stack in stacks(cfg.arch):
        for k in range(stack_layers(cfg)):
            for ours, theirs in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"),
                                 ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
                out[f"{stack}.l{k}.{ours}"] = w(f"{stack}.{theirs}_l{k}")
    if cfg.arch == "attn_bilstm":
        out["att_proj.W"], out["att_proj.b"] = w("att_proj.weight"), w("att_proj.bias")
        out["att_score.W"] = w("att_score.weight")
    if cfg.arch in FOLDED_ARCHS:
        out.update(folded_arrays(state_dict, cfg))
    else:
        out["head.W"], out["head.b"] = w("head.weight"), w("head.bias")
    return out


def export_numpy(state_dict: Dict[str, torch.Tensor], cfg: ModelConfig, metadata: ModelMetadata, path: str) -> None:
    """Write ``path`` (a filename ending in ``.npz``) and check it reads back bit-exact."""
    arrays: Dict[str, Any] = npz_arrays(state_dict, cfg, metadata)  # Any: np.savez's **kwds typing
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a temp name
        np.savez(f, **arrays)
    with np.load(path, allow_pickle=False) as z:
        if set(z.files) != set(arrays):
            raise ExportError(f"{path}: keys do not round-trip")
        for key, value in arrays.items():
            if z[key].dtype != value.dtype or not np.array_equal(z[key], value):
                raise ExportError(f"{path}: array {key!r} does not round-trip")


def read_metadata_props(path: str) -> Dict[str, str]:
    """The ``__metadata__`` props of a ``model.npz``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return dict(json.loads(str(z[METADATA_KEY])))
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"{path}: not a ser-edge npz model ({e})") from None
