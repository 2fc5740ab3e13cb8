"""``model.npz`` for the runtime's pure-numpy LSTM backend (no onnxruntime, no torch).

Layout (``np.load(path, allow_pickle=False)``; every weight float32, C-contiguous)::

    __format__          str   "ser-edge-npz"
    __format_version__  int64 1
    __arch__            str   "lstm" | "attn_bilstm"
    __num_layers__      int64 L, layers per LSTM stack
    __metadata__        str   JSON object: ModelMetadata.to_props() (ser_edge.feature_config, ...)

    per stack S and layer k in 0..L-1   (S = "lstm" for arch lstm; "fwd" and "bwd" for attn_bilstm)
    S.l{k}.W_ih         (4H, F_k)  input weights, F_0 = n_mfcc, F_k = H for k > 0
    S.l{k}.W_hh         (4H, H)    recurrent weights
    S.l{k}.b_ih         (4H,)
    S.l{k}.b_hh         (4H,)

    arch "lstm"
    head.W              (C, H)     head.b  (C,)

    arch "attn_bilstm"
    att_proj.W          (H, 2H)    att_proj.b  (H,)
    att_score.W         (1, H)     (no bias)
    head.W              (C, 2H)    head.b  (C,)

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
    Padding frames (t >= n) never influence the result.
"""

from __future__ import annotations

import json
from typing import Dict, List

import numpy as np
import torch

from ser_edge.models import ModelConfig
from ser_edge.runtime.metadata import ModelMetadata

from .errors import ExportError

NPZ_FORMAT = "ser-edge-npz"
NPZ_FORMAT_VERSION = 1
GATE_ORDER = "ifgo"


def stacks(arch: str) -> List[str]:
    """Names of the LSTM stacks of ``arch`` (also their ``state_dict`` prefixes)."""
    return ["fwd", "bwd"] if arch == "attn_bilstm" else ["lstm"]


def npz_arrays(state_dict: Dict[str, torch.Tensor], cfg: ModelConfig, metadata: ModelMetadata) -> Dict[str, np.ndarray]:
    """Rename the PyTorch weights to the documented layout. ``{key: array}``."""
    def w(name: str) -> np.ndarray:
        return np.ascontiguousarray(state_dict[name].detach().cpu().numpy(), dtype=np.float32)

    out: Dict[str, np.ndarray] = {
        "__format__": np.array(NPZ_FORMAT),
        "__format_version__": np.array(NPZ_FORMAT_VERSION, dtype=np.int64),
        "__arch__": np.array(cfg.arch),
        "__num_layers__": np.array(cfg.num_layers, dtype=np.int64),
        "__metadata__": np.array(json.dumps(metadata.to_props(), sort_keys=True)),
    }
    for stack in stacks(cfg.arch):
        for k in range(cfg.num_layers):
            for ours, theirs in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
                out[f"{stack}.l{k}.{ours}"] = w(f"{stack}.{theirs}_l{k}")
    if cfg.arch == "attn_bilstm":
        out["att_proj.W"], out["att_proj.b"] = w("att_proj.weight"), w("att_proj.bias")
        out["att_score.W"] = w("att_score.weight")
    out["head.W"], out["head.b"] = w("head.weight"), w("head.bias")
    return out


def export_numpy(state_dict: Dict[str, torch.Tensor], cfg: ModelConfig, metadata: ModelMetadata, path: str) -> None:
    """Write ``path`` (a filename ending in ``.npz``) and check it reads back bit-exact."""
    arrays = npz_arrays(state_dict, cfg, metadata)
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
            return dict(json.loads(str(z["__metadata__"])))
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"{path}: not a ser-edge npz model ({e})") from None
