"""Pure-numpy inference for ``model.npz``: no engine at all, for devices where onnxruntime and
LiteRT are unavailable. Implements lstm and attn_bilstm of ``ser_edge.models`` in float32 (and
the LSTM that :mod:`.numpy_archs` builds res_lstm_att and conv_lstm on; it also adds the
LSTM-free stats_linear).

LSTM (PyTorch semantics, gate order i, f, g, o)::

    z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    i, f, o = sigmoid(z_i, z_f, z_o);  g = tanh(z_g)
    c_t = f * c_{t-1} + i * g;         h_t = o * tanh(c_t)

The input projection ``W_ih x_t + b`` is one matmul over all timesteps; only the recurrence
loops over time. ``sigmoid(x) = (1 + tanh(x / 2)) / 2``, so the i, f, o rows are pre-scaled by
1/2 at load time and one ``tanh`` per step evaluates all four gates (and never overflows).
The BiLSTM's forward and backward stacks run side by side in one loop (a leading direction
axis), and the layers of a stack advance together as a wavefront (:class:`LSTMStack`: layer l
runs step k - l at iteration k, all layers in one matmul and one set of gate operations), so
the Python overhead that dominates at batch 1 is paid once per step, not once per step, layer
and direction. Buffers are allocated once per call and every numpy call writes into them.

File layout: ``ser_edge.export.numpy_export`` (``__format__ = "ser-edge-npz"``, version 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Dict, Mapping, Sequence, Tuple

import numpy as np

from ..metadata import MetadataError, ModelMetadata
from .base import Backend

#: The ``.npz`` layout this runtime reads (documented in ``ser_edge.export.numpy_export``, which
#: imports these names: the runtime owns the format, the exporter writes it).
NPZ_FORMAT, NPZ_FORMAT_VERSION = "ser-edge-npz", 1
FORMAT_KEY, VERSION_KEY, METADATA_KEY = "__format__", "__format_version__", "__metadata__"
ARCH_KEY, NUM_LAYERS_KEY = "__arch__", "__num_layers__"


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
    def from_torch(cls, *directions: Sequence[np.ndarray]) -> LSTMLayer:
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


@dataclass(frozen=True)
class LSTMStack:
    """Stacked layers of one hidden size, with their recurrences laid out for a *wavefront*:
    at iteration ``k`` layer ``l`` runs its step ``k - l``, which needs layer ``l - 1``'s output
    of iteration ``k - 1`` and its own state, so all layers advance in one matmul of the
    concatenated hidden states ``[h_1 .. h_L] (L*H)`` by ``w_rec (D, L*H, L*4H)`` (block
    ``(l, l)`` = layer l's ``w_hh``, block ``(l - 1, l)`` = its ``w_ih``) and one set of gate
    operations. At batch 1 a step costs numpy-call overhead, not arithmetic, so two layers cost
    about what one did. ``b_rec (D, 1, L*4H)``: the biases of layers 2..L (layer 1's rides on
    its input projection, computed for all steps at once)."""

    layers: Tuple[LSTMLayer, ...]
    w_rec: np.ndarray
    b_rec: np.ndarray

    @classmethod
    def of(cls, layers: Sequence[LSTMLayer]) -> LSTMStack:
        d, h = layers[0].w_hh.shape[0], layers[0].hidden_size
        if any(layer.hidden_size != h for layer in layers):
            raise ValueError("the layers of a stack must share one hidden size")
        n = len(layers)
        w_rec = np.zeros((d, n * h, n * 4 * h), dtype=np.float32)
        b_rec = np.zeros((d, 1, n * 4 * h), dtype=np.float32)
        for k, layer in enumerate(layers):
            cols = slice(4 * h * k, 4 * h * (k + 1))
            w_rec[:, h * k:h * (k + 1), cols] = layer.w_hh
            if k:
                w_rec[:, h * (k - 1):h * k, cols] = layer.w_ih
                b_rec[:, :, cols] = layer.b[:, 0]
        return cls(tuple(layers), w_rec, b_rec)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return self.layers[0].hidden_size


def lstm_stack_state(x: np.ndarray, stack: LSTMStack, h0: np.ndarray, c0: np.ndarray,
                     all_steps: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run a stack from state ``h0``, ``c0`` ``(L, D, B, H) float32`` (left unchanged).
    ``(D, B, T, in) -> (last layer's output (D, B, T, H), final h (L, D, B, H), final c)``;
    with ``all_steps=False`` the output holds the last step only ``(D, B, 1, H)`` (a stream's
    stepper needs no more, and storing every step is one more numpy call per step).
    Running T1 then T2 steps from the returned state equals running T1 + T2 steps at once, to
    float rounding (OpenBLAS rounds a matmul's rows differently for different row counts)."""
    n_layers, h_size = len(stack), stack.hidden_size
    d, b, t, _ = x.shape
    # fresh C-ordered copies (updated in place; h0 and c0 may even be one array)
    hs = np.array(h0.transpose(1, 2, 0, 3), dtype=np.float32, order="C")  # (D, B, L, H)
    cs = np.array(c0.transpose(1, 2, 0, 3), dtype=np.float32, order="C")
    out = np.empty((d, b, t if all_steps else min(t, 1), h_size), dtype=np.float32)
    if t == 0:
        return out, hs.transpose(2, 0, 1, 3).copy(), cs.transpose(2, 0, 1, 3).copy()
    first = stack.layers[0]
    n_iter, width = t + n_layers - 1, 4 * h_size
    # What each iteration adds to the recurrent matmul: layer 1's input projection (all steps at
    # once) and the biases of layers 2..L, laid out per iteration (D, B, T + L - 1, L*4H).
    add = np.empty((d, b, n_iter, n_layers * width), dtype=np.float32)
    add[...] = stack.b_rec[:, :, None, :]
    np.matmul(x, first.w_ih[:, None], out=add[:, :, :t, :width])
    add[:, :, :t, :width] += first.b
    # Every numpy call writes into buffers allocated once (at batch 1 allocation is a good part
    # of a step's cost), and one affine pass turns tanh(z) into the gates: sigmoid(x) =
    # (1 + tanh(x / 2)) / 2 for i, f, o (rows pre-halved at load time), tanh for g.
    scale, shift = _gate_affine(h_size)
    z = np.empty((d, b, n_layers, width), dtype=np.float32)
    ig = np.empty((d, b, n_layers, h_size), dtype=np.float32)
    h_flat = hs.reshape(d, b, n_layers * h_size)
    views = lambda lo, hi: _wavefront_views(h_flat, stack.w_rec, z, cs, hs, ig, lo, hi)  # noqa: E731
    steady = views(0, n_layers - 1)
    last = hs[:, :, n_layers - 1]
    for k in range(n_iter):
        lo, hi = max(0, k - t + 1), min(n_layers - 1, k)  # the layers with a step at this iteration
        full = lo == 0 and hi == n_layers - 1
        h_in, w, zk, cols, gates, (gi, gf, gg, go), c, h, prod = steady if full else views(lo, hi)
        np.matmul(h_in, w, out=zk)
        zk += add[:, :, k, cols]
        np.tanh(zk, out=zk)
        gates *= scale
        gates += shift
        np.multiply(gi, gg, out=prod)
        c *= gf
        c += prod
        np.tanh(c, out=h)
        h *= go
        if hi == n_layers - 1 and (all_steps or k == n_iter - 1):
            out[:, :, k - hi if all_steps else 0] = last
    return out, hs.transpose(2, 0, 1, 3).copy(), cs.transpose(2, 0, 1, 3).copy()


def _wavefront_views(h_flat: np.ndarray, w_rec: np.ndarray, z: np.ndarray, cs: np.ndarray, hs: np.ndarray,
                     ig: np.ndarray, lo: int, hi: int) -> Tuple[Any, ...]:
    """Views of the buffers for an iteration where layers ``lo..hi`` step: the hidden states they
    read (layers ``lo - 1 .. hi``), their block of ``w_rec``, their gate pre-activations (flat,
    its column slice, per layer, and the four gates i, f, g, o), cell and hidden states and the
    i * g scratch."""
    h_size, width = hs.shape[-1], z.shape[-1]
    rows = slice(max(lo - 1, 0) * h_size, (hi + 1) * h_size)
    cols = slice(lo * width, (hi + 1) * width)
    d, b = z.shape[:2]
    gates = z[:, :, lo:hi + 1]
    split = tuple(gates[..., k * h_size:(k + 1) * h_size] for k in range(4))
    return (h_flat[..., rows], w_rec[:, rows, cols], z.reshape(d, b, -1)[..., cols], cols, gates, split,
            cs[:, :, lo:hi + 1], hs[:, :, lo:hi + 1], ig[:, :, lo:hi + 1])


@lru_cache(maxsize=8)
def _gate_affine(h_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)``, each ``(4H,) float32``: ``tanh(z) * scale + shift`` is sigmoid for the
    i, f, o blocks (0.5, 0.5) and tanh for the g block (1, 0)."""
    scale = np.full(4 * h_size, 0.5, dtype=np.float32)
    scale[2 * h_size:3 * h_size] = 1.0
    shift = scale.copy()
    shift[2 * h_size:3 * h_size] = 0.0
    scale.setflags(write=False)
    shift.setflags(write=False)
    return scale, shift


def lstm_stack(x: np.ndarray, stack: LSTMStack) -> np.ndarray:
    """Stacked layers from zero state. ``(D, B, T, in) -> (D, B, T, H)``."""
    d, b = x.shape[:2]
    zeros = np.zeros((len(stack), d, b, stack.hidden_size), dtype=np.float32)
    return lstm_stack_state(x, stack, zeros, zeros)[0]


def reverse_index(lengths: np.ndarray, t: int) -> np.ndarray:
    """``(B, T) int64``: reverses each item within its length, padding stays put (self-inverse);
    mirrors ``ser_edge.models.reverse_index``."""
    steps = np.arange(t)[None, :]
    rev = lengths[:, None] - 1 - steps
    return np.where(rev >= 0, rev, steps)


def gather_time(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``x (B, T, D)``, ``index (B, T)`` -> ``x[b, index[b, t]]``."""
    return np.take_along_axis(x, index[:, :, None], axis=1)


def lstm_classifier(x: np.ndarray, lengths: np.ndarray, w: Mapping[str, Any]) -> np.ndarray:
    """``LSTMClassifier``: hidden state at the last valid frame -> head. ``(B, T, F) -> (B, C)``."""
    out = lstm_stack(x[None], w["lstm"])[0]
    last = out[np.arange(len(lengths)), np.maximum(lengths - 1, 0)]  # (B, H)
    return last @ w["head_w"] + w["head_b"]


def attention_bilstm(x: np.ndarray, lengths: np.ndarray, w: Mapping[str, Any]) -> np.ndarray:
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


#: ``arch -> f(features (B, T, F), lengths (B,), weights) -> logits (B, C)``; numpy_archs adds
#: res_lstm_att, conv_lstm and stats_linear (imported at the end of this module).
ARCHITECTURES: Dict[str, Callable[..., np.ndarray]] = {"lstm": lstm_classifier, "attn_bilstm": attention_bilstm}
#: Weight loaders of the numpy_archs architectures: ``(arrays, num_layers, n_features, n_classes)
#: -> weights``, in place of the LSTM-only code of :func:`weights_from_arrays`.
ARCH_WEIGHTS: Dict[str, Callable[..., Dict[str, Any]]] = {}


def _weight(arrays: Mapping[str, np.ndarray], key: str, shape: Tuple[int, ...]) -> np.ndarray:
    """``arrays[key]`` checked to be a finite float array of ``shape`` (-1 = any size)."""
    a = arrays[key]
    if a.dtype.kind != "f" or a.ndim != len(shape) or any(n not in (-1, m) for n, m in zip(shape, a.shape)):
        raise ValueError(f"{key} is {a.dtype} {a.shape}, expected float {shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{key} holds NaN or infinite values")
    return a


def _stack(arrays: Mapping[str, np.ndarray], names: Tuple[str, ...], num_layers: int, n_in: int,
           hidden: int) -> LSTMStack:
    """Layers ``{name}.l{k}.W_ih/W_hh/b_ih/b_hh``, k in 0..num_layers-1, one direction per name;
    shapes checked so a bad file fails here, not inside a matmul."""
    layers = []
    for k in range(num_layers):
        shapes = {"W_ih": (4 * hidden, n_in if k == 0 else hidden), "W_hh": (4 * hidden, hidden),
                  "b_ih": (4 * hidden,), "b_hh": (4 * hidden,)}
        layers.append(LSTMLayer.from_torch(*(tuple(_weight(arrays, f"{name}.l{k}.{p}", shape)
                                                   for p, shape in shapes.items()) for name in names)))
    return LSTMStack.of(layers)


def weights_from_arrays(arrays: Mapping[str, np.ndarray], arch: str, num_layers: int, n_features: int,
                        n_classes: int) -> Dict[str, Any]:
    """npz arrays (layout in ``ser_edge.export.numpy_export``) -> the weight dict the
    :data:`ARCHITECTURES` functions take, matrices transposed for ``x @ w``.
    Raises KeyError / ValueError on a missing, misshapen or non-finite array."""
    if arch in ARCH_WEIGHTS:  # each checks num_layers itself (stats_linear's files say 0)
        return ARCH_WEIGHTS[arch](arrays, num_layers, n_features, n_classes)
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    names = ("lstm",) if arch == "lstm" else ("fwd", "bwd")
    hidden = _weight(arrays, f"{names[0]}.l0.W_hh", (-1, -1)).shape[1]
    stack = _stack(arrays, names, num_layers, n_features, hidden)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    width = hidden * len(names)  # the head reads the concatenated directions
    w: Dict[str, Any] = {"head_w": f32(_weight(arrays, "head.W", (n_classes, width)).T),
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

    def __init__(self, path: str, threads: int = 1) -> None:
        # ``threads`` is accepted for the common interface; numpy's BLAS pool is set by its
        # own environment variables (OMP_NUM_THREADS / OPENBLAS_NUM_THREADS) before import.
        super().__init__(path, threads)
        arrays = read_npz(self.path)
        if str(arrays.get(FORMAT_KEY, "")) != NPZ_FORMAT or METADATA_KEY not in arrays:
            raise MetadataError(f"{self.path}: not a ser-edge numpy model (no {FORMAT_KEY!r} / "
                                f"{METADATA_KEY!r}); export one with `ser-edge export`")
        if str(arrays.get(VERSION_KEY, "")) != str(NPZ_FORMAT_VERSION):
            raise MetadataError(f"{self.path}: npz format version {arrays.get(VERSION_KEY)} "
                                f"is not supported (this runtime reads {NPZ_FORMAT_VERSION})")
        try:
            props = json.loads(str(arrays[METADATA_KEY]))
        except (ValueError, RecursionError) as e:  # RecursionError: absurdly nested JSON
            raise MetadataError(f"{self.path}: corrupt {METADATA_KEY!r}: {e}") from None
        if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
            raise MetadataError(f"{self.path}: {METADATA_KEY!r} must hold a JSON object of strings")
        self.metadata = ModelMetadata.from_props(props, source=self.path)
        self.arch = str(arrays.get(ARCH_KEY, ""))
        if self.arch not in ARCHITECTURES:
            raise MetadataError(f"{self.path}: unknown architecture {self.arch!r}")
        try:
            num_layers = int(arrays[NUM_LAYERS_KEY].item())
            self.weights = weights_from_arrays(arrays, self.arch, num_layers, self.metadata.feature_config.n_features,
                                               len(self.labels))
        except (KeyError, ValueError, TypeError) as e:
            raise MetadataError(f"{self.path}: weights do not match a {self.arch} model with "
                                f"{self.metadata.feature_config.n_features} features and {len(self.labels)} "
                                f"classes ({e})") from None

    def _run(self, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return ARCHITECTURES[self.arch](features, lengths, self.weights)

    def stepper(self) -> NumpyStepper:
        """Stateful stepping for a unidirectional model (see :class:`NumpyStepper`); raises
        :class:`MetadataError` for an architecture that reads the whole window."""
        if self.arch != "lstm":
            raise MetadataError(f"{self.path}: a {self.arch} model cannot run statefully (it reads the whole window)")
        return NumpyStepper(self.weights, self.metadata.feature_config.n_features, len(self.labels))


#: An LSTM state ``(h, c)``, each ``(num_layers, batch, hidden) float32``.
State = Tuple[np.ndarray, np.ndarray]


class NumpyStepper:
    """``LSTMClassifier`` one chunk of frames at a time, state in and out, so a stream pays for
    each frame once. State: ``(h, c)``, each ``(num_layers, B, H) float32``.

    ``step(x (B, T, F), (h, c)) -> (logits (B, C) at the chunk's last frame, (h', c'))``; stepping
    over consecutive chunks from :meth:`zero_state` gives the logits and state of running all the
    frames at once (every frame valid: a stream has no padding), to float rounding."""

    def __init__(self, weights: Mapping[str, Any], n_features: int, n_classes: int) -> None:
        self.weights, self.n_features, self.n_classes = weights, n_features, n_classes
        self.num_layers = len(weights["lstm"])
        self.hidden_size = weights["lstm"].hidden_size

    def zero_state(self, batch: int = 1) -> State:
        shape = (self.num_layers, batch, self.hidden_size)
        return np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)

    def step(self, x: np.ndarray, state: State) -> Tuple[np.ndarray, State]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        h0, c0 = state
        if x.ndim != 3 or x.shape[1] < 1 or x.shape[2] != self.n_features:
            raise ValueError(f"features must be (batch, time >= 1, {self.n_features}), got {x.shape}")
        if h0.shape != (self.num_layers, x.shape[0], self.hidden_size) or c0.shape != h0.shape:
            raise ValueError(f"state must be 2 x {(self.num_layers, x.shape[0], self.hidden_size)}, "
                             f"got {h0.shape} and {c0.shape}")
        out, h, c = lstm_stack_state(x[None], self.weights["lstm"], h0[:, None], c0[:, None], all_steps=False)
        logits = out[0, :, -1] @ self.weights["head_w"] + self.weights["head_b"]
        return logits.astype(np.float32), (h[:, 0], c[:, 0])


#: Most bytes an ``.npz`` model may hold once decompressed (all members together): 16M float32
#: parameters, ~30x the shipped model. Checked from the archive's headers before decompressing.
MAX_NPZ_BYTES = 64 << 20
MAX_NPZ_MEMBERS = 1024


def check_npz_members(path: str) -> None:
    """Refuse an archive whose members would decompress to more than they say or than a model
    needs, reading only the zip directory and each member's ``.npy`` header (a few bytes each):
    every member's uncompressed size (zip header) must equal its ``.npy`` header plus
    ``prod(shape) * itemsize``, and the total stays within :data:`MAX_NPZ_BYTES`. A zip bomb or a
    header promising a huge array is refused before anything large is inflated or allocated.
    Raises :class:`MetadataError`."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        total = sum(i.file_size for i in infos)
        if len(infos) > MAX_NPZ_MEMBERS or total > MAX_NPZ_BYTES:
            raise MetadataError(f"{path}: {len(infos)} arrays, {total / 2**20:.0f} MiB uncompressed; a numpy "
                                f"model holds at most {MAX_NPZ_MEMBERS} and {MAX_NPZ_BYTES >> 20} MiB")
        for info in infos:
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version != (1, 0):  # what np.savez writes for plain arrays; 2.0 headers can be 4 GiB
                    raise MetadataError(f"{path}: {info.filename}: unsupported .npy version {version}")
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)  # header <= 64 KiB
                needed = f.tell() + int(np.prod(shape, dtype=object)) * dtype.itemsize
            if dtype.hasobject or info.file_size != needed:
                raise MetadataError(f"{path}: member {info.filename} is {info.file_size} bytes uncompressed; "
                                    f"its header ({dtype} {shape}) needs {needed}")


def read_npz(path: str) -> dict:
    """All arrays of an ``.npz`` (no pickles), sizes checked first (:func:`check_npz_members`).
    Raises :class:`MetadataError` for a non-npz file or one that would exhaust memory."""
    try:
        check_npz_members(path)
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except MetadataError:
        raise
    # zipfile and numpy's header parser report corrupt bytes as many types (NotImplementedError for
    # an unknown compression method, tokenize.TokenError, zlib.error, ...): all mean "not an npz".
    except Exception as e:
        raise MetadataError(f"{path}: not a readable .npz model ({type(e).__name__}: {e})") from None


# The architectures built on the LSTM above; numpy_archs imports it from here and registers
# itself in ARCHITECTURES / ARCH_WEIGHTS, so it comes last (either import order then works).
from . import numpy_archs  # noqa: E402,F401
