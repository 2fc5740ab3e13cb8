"""Pure-numpy inference for ``model.npz``: no engine at all, for devices where onnxruntime and
LiteRT are unavailable. Implements both architectures of ``ser_edge.models`` in float32.

LSTM (PyTorch semantics, gate order i, f, g, o)::

    z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    i, f, o = sigmoid(z_i, z_f, z_o);  g = tanh(z_g)
    c_t = f * c_{t-1} + i * g;         h_t = o * tanh(c_t)

The input projection ``W_ih x_t + b`` is one matmul over all timesteps; only the recurrence
loops over time. ``sigmoid(x) = (1 + tanh(x / 2)) / 2``, so the i, f, o rows are pre-scaled by
1/2 at load time and one ``tanh`` per step evaluates all four gates (and never overflows).
The BiLSTM's forward and backward stacks run side by side in one loop (a leading direction
axis), halving the Python overhead that dominates at batch 1.

File layout: ``ser_edge.export.numpy_export`` (``__format__ = "ser-edge-npz"``, version 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import List, Mapping, Tuple

import numpy as np

from ..metadata import MetadataError, ModelMetadata
from .base import Backend

FORMAT_KEY, METADATA_KEY = "__format__", "__metadata__"
#: The ``.npz`` layout this runtime reads (documented in ``ser_edge.export.numpy_export``).
NPZ_FORMAT, NPZ_FORMAT_VERSION = "ser-edge-npz", 1


@dataclass(frozen=True)
class LSTMLayer:
    """One layer for ``D`` independent directions run side by side (``D = 1``, or 2 for the
    BiLSTM's fwd and bwd stacks, so one Python loop drives both recurrences). Gate rows are
    pre-scaled (see module docstring) and matrices transposed for ``x @ w``:
    ``w_ih (D, in, 4H)``, ``w_hh (D, H, 4H)``, ``b (D, 1, 1, 4H)``, float32."""

    w_ih: np.ndarray
    w_hh: np.ndarray
    b: np.ndarray

    @classmethod
    def from_torch(cls, *directions: Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> "LSTMLayer":
        """From one ``(weight_ih (4H, in), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,))``
        tuple per direction, in PyTorch's layout."""
        w_ih, w_hh, b = [], [], []
        for wi, wh, bi, bh in directions:
            h = wh.shape[1]
            if wi.shape[0] != 4 * h or wh.shape != (4 * h, h) or bi.shape != (4 * h,) or bh.shape != (4 * h,):
                raise ValueError(f"inconsistent LSTM weight shapes {wi.shape}, {wh.shape}, {bi.shape}, {bh.shape}")
            scale = np.full((4 * h, 1), 0.5, dtype=np.float64)
            scale[2 * h:3 * h] = 1.0  # g keeps its tanh
            w_ih.append((wi * scale).T)
            w_hh.append((wh * scale).T)
            b.append((bi + bh) * scale[:, 0])
        f32 = lambda a: np.ascontiguousarray(np.stack(a), dtype=np.float32)  # noqa: E731
        return cls(f32(w_ih), f32(w_hh), f32(b)[:, None, None, :])

    @property
    def hidden_size(self) -> int:
        return self.w_hh.shape[1]


def lstm_layer(x: np.ndarray, layer: LSTMLayer) -> np.ndarray:
    """Run one layer from zero state. ``(D, B, T, in) float32 -> (D, B, T, H) float32``."""
    d, b, t, _ = x.shape
    h_size = layer.hidden_size
    xp = x @ layer.w_ih[:, None] + layer.b  # (D, B, T, 4H): every timestep's input projection at once
    h = np.zeros((d, b, h_size), dtype=np.float32)
    c = np.zeros((d, b, h_size), dtype=np.float32)
    out = np.empty((d, b, t, h_size), dtype=np.float32)
    gi, gf, gg, go = (slice(k * h_size, (k + 1) * h_size) for k in range(4))
    for step in range(t):
        z = np.tanh(xp[:, :, step] + h @ layer.w_hh)  # (D, B, 4H): tanh(x/2) for i, f, o; tanh(x) for g
        s = 0.5 * z + 0.5  # sigmoid for i, f, o (the g block of s is unused)
        c = s[..., gf] * c + s[..., gi] * z[..., gg]
        h = s[..., go] * np.tanh(c)
        out[:, :, step] = h
    return out


def lstm_stack(x: np.ndarray, layers: List[LSTMLayer]) -> np.ndarray:
    """Stacked layers. ``(D, B, T, in) -> (D, B, T, H)``."""
    for layer in layers:
        x = lstm_layer(x, layer)
    return x


def reverse_index(lengths: np.ndarray, t: int) -> np.ndarray:
    """``(B, T) int64``: reverses each item within its length, padding stays put (self-inverse);
    mirrors ``ser_edge.models.reverse_index``."""
    steps = np.arange(t)[None, :]
    rev = lengths[:, None] - 1 - steps
    return np.where(rev >= 0, rev, steps)


def gather_time(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``x (B, T, D)``, ``index (B, T)`` -> ``x[b, index[b, t]]``."""
    return np.take_along_axis(x, index[:, :, None], axis=1)


def lstm_classifier(x: np.ndarray, lengths: np.ndarray, w: Mapping[str, object]) -> np.ndarray:
    """``LSTMClassifier``: hidden state at the last valid frame -> head. ``(B, T, F) -> (B, C)``."""
    out = lstm_stack(x[None], w["lstm"])[0]
    last = out[np.arange(len(lengths)), np.maximum(lengths - 1, 0)]  # (B, H)
    return last @ w["head_w"] + w["head_b"]


def attention_bilstm(x: np.ndarray, lengths: np.ndarray, w: Mapping[str, object]) -> np.ndarray:
    """``AttentionBiLSTM``: fwd + length-reversed bwd stacks (run together), masked additive
    attention, head. ``(B, T, F) -> (B, C)``."""
    t = x.shape[1]
    rev = reverse_index(lengths, t)
    both = lstm_stack(np.stack([x, gather_time(x, rev)]), w["bi"])  # (2, B, T, H)
    h = np.concatenate([both[0], gather_time(both[1], rev)], axis=-1)  # (B, T, 2H)
    scores = np.tanh(h @ w["att_proj_w"] + w["att_proj_b"]) @ w["att_score_w"]  # (B, T)
    scores = np.where(np.arange(t)[None, :] < lengths[:, None], scores, np.float32(-1e9))
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    pooled = np.einsum("bt,btd->bd", weights, h)  # (B, 2H)
    return pooled @ w["head_w"] + w["head_b"]


ARCHITECTURES = {"lstm": lstm_classifier, "attn_bilstm": attention_bilstm}


def _weight(arrays: Mapping[str, np.ndarray], key: str, shape: Tuple[int, ...]) -> np.ndarray:
    """``arrays[key]`` checked to be a finite float array of ``shape`` (-1 = any size)."""
    a = arrays[key]
    if a.dtype.kind != "f" or a.ndim != len(shape) or any(n not in (-1, m) for n, m in zip(shape, a.shape)):
        raise ValueError(f"{key} is {a.dtype} {a.shape}, expected float {shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{key} holds NaN or infinite values")
    return a


def _stack(arrays: Mapping[str, np.ndarray], names: Tuple[str, ...], num_layers: int, n_in: int,
           hidden: int) -> List[LSTMLayer]:
    """Layers ``{name}.l{k}.W_ih/W_hh/b_ih/b_hh``, k in 0..num_layers-1, one direction per name;
    shapes checked so a bad file fails here, not inside a matmul."""
    layers = []
    for k in range(num_layers):
        shapes = {"W_ih": (4 * hidden, n_in if k == 0 else hidden), "W_hh": (4 * hidden, hidden),
                  "b_ih": (4 * hidden,), "b_hh": (4 * hidden,)}
        layers.append(LSTMLayer.from_torch(*(tuple(_weight(arrays, f"{name}.l{k}.{p}", shape)
                                                   for p, shape in shapes.items()) for name in names)))
    return layers


def weights_from_arrays(arrays: Mapping[str, np.ndarray], arch: str, num_layers: int, n_features: int,
                        n_classes: int) -> dict:
    """npz arrays (layout in ``ser_edge.export.numpy_export``) -> the weight dict the
    :data:`ARCHITECTURES` functions take, matrices transposed for ``x @ w``.
    Raises KeyError / ValueError on a missing, misshapen or non-finite array."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    names = ("lstm",) if arch == "lstm" else ("fwd", "bwd")
    hidden = _weight(arrays, f"{names[0]}.l0.W_hh", (-1, -1)).shape[1]
    stack = _stack(arrays, names, num_layers, n_features, hidden)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    width = hidden * len(names)  # the head reads the concatenated directions
    w = {"head_w": f32(_weight(arrays, "head.W", (n_classes, width)).T),
         "head_b": f32(_weight(arrays, "head.b", (n_classes,)))}
    if arch == "lstm":
        w["lstm"] = stack
    else:
        att = _weight(arrays, "att_proj.W", (-1, width)).shape[0]
        w.update(bi=stack, att_proj_w=f32(arrays["att_proj.W"].T),
                 att_proj_b=f32(_weight(arrays, "att_proj.b", (att,))),
                 att_score_w=f32(_weight(arrays, "att_score.W", (1, att))[0]))
    return w


class NumpyLSTMBackend(Backend):
    name = "numpy"
    extensions = (".npz",)

    def __init__(self, path: str, threads: int = 1) -> None:
        # ``threads`` is accepted for the common interface; numpy's BLAS pool is set by its
        # own environment variables (OMP_NUM_THREADS / OPENBLAS_NUM_THREADS) before import.
        super().__init__(path, threads)
        arrays = read_npz(self.path)
        if str(arrays.get(FORMAT_KEY, "")) != NPZ_FORMAT or METADATA_KEY not in arrays:
            raise MetadataError(f"{self.path}: not a ser-edge numpy model (no {FORMAT_KEY!r} / "
                                f"{METADATA_KEY!r}); export one with `ser-edge export`")
        if str(arrays.get("__format_version__", "")) != str(NPZ_FORMAT_VERSION):
            raise MetadataError(f"{self.path}: npz format version {arrays.get('__format_version__')} "
                                f"is not supported (this runtime reads {NPZ_FORMAT_VERSION})")
        try:
            props = json.loads(str(arrays[METADATA_KEY]))
        except (ValueError, RecursionError) as e:  # RecursionError: absurdly nested JSON
            raise MetadataError(f"{self.path}: corrupt {METADATA_KEY!r}: {e}") from None
        if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
            raise MetadataError(f"{self.path}: {METADATA_KEY!r} must hold a JSON object of strings")
        self.metadata = ModelMetadata.from_props(props, source=self.path)
        self.arch = str(arrays.get("__arch__", ""))
        if self.arch not in ARCHITECTURES:
            raise MetadataError(f"{self.path}: unknown architecture {self.arch!r}")
        try:
            num_layers = int(arrays["__num_layers__"].item())
            self.weights = weights_from_arrays(arrays, self.arch, num_layers, self.metadata.feature_config.n_mfcc,
                                               len(self.labels))
        except (KeyError, ValueError, TypeError) as e:
            raise MetadataError(f"{self.path}: weights do not match a {self.arch} model with "
                                f"{self.metadata.feature_config.n_mfcc} features and {len(self.labels)} "
                                f"classes ({e})") from None

    def _run(self, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return ARCHITECTURES[self.arch](features, lengths, self.weights)


def read_npz(path: str) -> dict:
    """All arrays of an ``.npz`` (no pickles). Raises :class:`MetadataError` for a non-npz file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    # zipfile and numpy's header parser report corrupt bytes as many types (NotImplementedError for
    # an unknown compression method, tokenize.TokenError, zlib.error, ...): all mean "not an npz".
    except Exception as e:
        raise MetadataError(f"{path}: not a readable .npz model ({type(e).__name__}: {e})") from None
