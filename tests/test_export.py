"""Export stage: ONNX / TorchScript / npz artifacts, their checks, parity gates, atomicity, CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from ser_edge.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from ser_edge.export import (  # noqa: E402
    EvalSet,
    ExportError,
    GateFailure,
    eval_set_from_corpus,
    export_all,
    numpy_export,
    onnx_export,
    parity,
    parse_formats,
    pipeline,
    torchscript_export,
)
from ser_edge.export.common import build_metadata, make_selftest, selftest_input, speechlike, torch_logits  # noqa: E402
from ser_edge.models import ModelConfig, build_model  # noqa: E402
from ser_edge.runtime.features import FeatureConfig  # noqa: E402
from ser_edge.runtime.metadata import ModelMetadata  # noqa: E402

ARCHS = ("lstm", "attn_bilstm")
MODEL_FILES = ("model.onnx", "model.int8.onnx", "model.ts", "model.int8.ts", "model.npz")
#: A unidirectional lstm also gets its stateful graphs, for streaming (issue 10).
STREAM_FILES = ("model.stream.onnx", "model.int8.stream.onnx")
FP32_ATOL = 1e-4


# ---------------------------------------------------------------------------------------------
# helpers and fixtures
# ---------------------------------------------------------------------------------------------

def _padded(lengths, n_features=40, seed=0):
    """Random inputs zero-padded to max(lengths): ``((B, T, F) float32, (B,) int64)``."""
    rng = np.random.default_rng(seed)
    t = max(lengths)
    x = np.zeros((len(lengths), t, n_features), np.float32)
    for i, n in enumerate(lengths):
        x[i, :n] = rng.standard_normal((n, n_features))
    return x, np.asarray(lengths, np.int64)


#: (batch lengths) probed for dynamic shapes: 1, 37 and 300 frames, and a padded batch of 3.
SHAPES = ([1], [37], [300], [300, 37, 1], [5, 12, 9])


def _model_and_meta(path):
    ckpt = load_checkpoint(str(path))
    model = ckpt.build_model()
    meta = build_metadata(ckpt, make_selftest(model, ckpt.feature_config, speechlike(0.5)))
    return ckpt, model, meta


def _model_files(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith("model."))


def _leftovers(directory):
    """Temp files or staging directories an export left behind."""
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith("."))


def _separable(rng, means, n, min_len=5, max_len=60):
    """Per-frame Gaussian features around a class mean, variable lengths, zero padded."""
    labels = np.arange(n) % len(means)
    lengths = rng.integers(min_len, max_len + 1, n)
    x = np.zeros((n, lengths.max(), means.shape[1]), np.float32)
    for i in range(n):
        x[i, :lengths[i]] = means[labels[i]] + rng.standard_normal((lengths[i], means.shape[1]))
    return x, lengths.astype(np.int64), labels.astype(np.int64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Factory ``trained(arch) -> (checkpoint path, EvalSet)``: a tiny model trained for a few
    steps on separable synthetic data, so argmaxes have margins and int8 gates mean something."""
    cache = {}

    def make(arch):
        if arch in cache:
            return cache[arch]
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        means = 0.8 * rng.standard_normal((4, 40))
        mcfg = ModelConfig(arch=arch, n_features=40, n_classes=4, hidden_size=24, num_layers=1, dropout=0.0,
                           conv_channels=8)  # conv_channels: conv_lstm only
        model = build_model(mcfg)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(60):
            x, lengths, y = _separable(rng, means, 32)
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x), torch.from_numpy(lengths)),
                                                     torch.from_numpy(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        x, lengths, y = _separable(np.random.default_rng(1), means, 64, min_len=3, max_len=120)
        ev = EvalSet([x[i, :lengths[i]] for i in range(len(y))], y, "separable test set", True)
        acc = float(np.mean(torch_logits(model, x, lengths).argmax(1) == y))
        assert acc > 0.9, f"fixture model did not train (accuracy {acc})"
        fcfg = FeatureConfig().with_stats(np.zeros(40), np.ones(40))
        path = tmp_path_factory.mktemp("trained") / f"{arch}.pt"
        save_checkpoint(str(path), Checkpoint(mcfg, fcfg, ["neutral", "happy", "sad", "angry"],
                                              model.state_dict(), {"note": "trained on separable synthetic data"}))
        cache[arch] = (path, ev)
        return cache[arch]

    return make


# ---------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_fp32_graph_and_parity(random_checkpoint, tmp_path, arch):
    ckpt, model, meta = _model_and_meta(random_checkpoint(arch))
    n_lstm = onnx_export.lstm_count(arch, ckpt.model_config.num_layers)
    # Export twice in one process: the second export is where the dynamo exporter froze time.
    for name in ("first.onnx", "second.onnx"):
        onnx_export.export_onnx(model, meta, str(tmp_path / name), n_lstm)
    proto = onnx.load(str(tmp_path / "second.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(proto.graph.input) + list(proto.graph.output)}
    assert dims["features"] == ["batch", "time", 40]
    assert dims["lengths"] == ["batch"]
    assert dims["logits"][0] == "batch"
    assert [n.op_type for n in proto.graph.node].count("LSTM") == n_lstm == (4 if arch == "attn_bilstm" else 2)
    run = onnx_export.OnnxRunner(str(tmp_path / "second.onnx"))
    for lengths in SHAPES:
        x, n = _padded(lengths)
        diff = np.abs(run(x, n) - torch_logits(model, x, n)).max()
        assert diff <= FP32_ATOL, (lengths, diff)


def test_fixed_time_axis_is_refused(random_checkpoint, tmp_path):
    _, model, _ = _model_and_meta(random_checkpoint("lstm"))
    path = str(tmp_path / "fixed.onnx")
    x, n = _padded([16, 9])
    torch.onnx.export(model, (torch.from_numpy(x), torch.from_numpy(n)), path, dynamo=False, opset_version=17,
                      input_names=["features", "lengths"], output_names=["logits"],
                      dynamic_axes={"features": {0: "batch"}, "lengths": {0: "batch"}, "logits": {0: "batch"}})
    with pytest.raises(ExportError, match="time axis of 'features' is fixed"):
        onnx_export.check_symbolic_axes(onnx.load(path), path)


@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_int8_uses_dynamic_quantize_lstm(random_checkpoint, tmp_path, arch):
    ckpt, model, meta = _model_and_meta(random_checkpoint(arch))
    n_lstm = onnx_export.lstm_count(arch, ckpt.model_config.num_layers)
    src, dst = str(tmp_path / "model.onnx"), str(tmp_path / "model.int8.onnx")
    onnx_export.export_onnx(model, meta, src, n_lstm)
    onnx_export.quantize_onnx(src, dst, n_lstm)
    ops = [n.op_type for n in onnx.load(dst).graph.node]
    assert ops.count("DynamicQuantizeLSTM") == n_lstm and "LSTM" not in ops
    assert os.path.getsize(dst) < 0.7 * os.path.getsize(src)
    run = onnx_export.OnnxRunner(dst)
    for lengths in SHAPES:
        x, n = _padded(lengths)
        out, ref = run(x, n), torch_logits(model, x, n)
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() < 0.05  # int8 error on an untrained model: small, not zero


def test_check_ops_refuses_unconverted_lstm(random_checkpoint, tmp_path):
    ckpt, model, meta = _model_and_meta(random_checkpoint("lstm"))
    path = str(tmp_path / "model.onnx")
    onnx_export.export_onnx(model, meta, path, 2)
    with pytest.raises(ExportError, match="DynamicQuantizeLSTM"):
        onnx_export.check_ops(onnx.load(path), path, {"DynamicQuantizeLSTM": 2, "LSTM": 0})


def test_stats_linear_onnx_fp32_and_int8_head(random_checkpoint, tmp_path):
    """No LSTM at all: fp32 is pooling + one Gemm over symbolic batch/time; int8 turns that head
    into MatMulInteger (onnxruntime has no dynamic int8 Gemm) and changes the logits a little."""
    ckpt, model, meta = _model_and_meta(random_checkpoint("stats_linear"))
    n_lstm = onnx_export.lstm_count("stats_linear", ckpt.model_config.num_layers)
    src, dst = str(tmp_path / "model.onnx"), str(tmp_path / "model.int8.onnx")
    onnx_export.export_onnx(model, meta, src, n_lstm)
    onnx_export.quantize_onnx(src, dst, n_lstm)
    ops = [n.op_type for n in onnx.load(src).graph.node]
    assert n_lstm == 0 and "LSTM" not in ops and ops.count("Gemm") == 1
    q_ops = [n.op_type for n in onnx.load(dst).graph.node]
    assert q_ops.count("MatMulInteger") == 1 and not {"Gemm", "LSTM", "DynamicQuantizeLSTM"} & set(q_ops)
    assert not [p for p in os.listdir(tmp_path) if p not in ("model.onnx", "model.int8.onnx")]  # no temp left
    dims = [d.dim_param or d.dim_value for d in onnx.load(dst).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "time", 40]
    run, qrun = onnx_export.OnnxRunner(src), onnx_export.OnnxRunner(dst)
    for lengths in SHAPES:
        x, n = _padded(lengths)
        ref = torch_logits(model, x, n)
        assert np.abs(run(x, n) - ref).max() <= FP32_ATOL, lengths
        q = qrun(x, n)
        assert q.shape == ref.shape and 0 < np.abs(q - ref).max() < 0.05, lengths


@pytest.mark.parametrize("alpha,match", [(2.0, "not a plain Linear"), (None, "would quantise nothing")])
def test_lstm_free_int8_refuses_what_it_cannot_quantise(tmp_path, alpha, match):
    """Without LSTMs the head is all int8 has to quantise: a Gemm it cannot rewrite exactly, or
    none at all, is an error rather than an "int8" file that is fp32 inside."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
    inits = [numpy_helper.from_array(np.ones((2, 3), np.float32), "W"),
             numpy_helper.from_array(np.zeros(2, np.float32), "b")]
    node = (helper.make_node("Identity", ["x"], ["y"]) if alpha is None
            else helper.make_node("Gemm", ["x", "W", "b"], ["y"], alpha=alpha, transB=1))
    src = str(tmp_path / "head.onnx")
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y], inits if alpha else []),
                                opset_imports=[helper.make_opsetid("", 17)]), src)
    with pytest.raises(ExportError, match=match):
        onnx_export.quantize_onnx(src, str(tmp_path / "head.int8.onnx"), 0)


# ---------------------------------------------------------------------------------------------
# TorchScript
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS + ("stats_linear",))
def test_torchscript_fp32_and_int8_dynamic_shapes(random_checkpoint, tmp_path, arch):
    _, model, meta = _model_and_meta(random_checkpoint(arch))
    fp32, int8 = str(tmp_path / "model.ts"), str(tmp_path / "model.int8.ts")
    torchscript_export.export_torchscript(model, meta, fp32)
    qmodel = torchscript_export.quantize_int8(model)
    torchscript_export.export_torchscript(qmodel, meta, int8)
    loaded, qloaded = torch.jit.load(fp32), torch.jit.load(int8)
    # the archive holds the dynamic-quantised LSTM's code (stats_linear: its head Linear's)
    module = "linear.py" if arch == "stats_linear" else "rnn.py"
    with zipfile.ZipFile(int8) as zf:
        assert any(f"ao/nn/quantized/dynamic/modules/{module}" in n for n in zf.namelist())
    for lengths in SHAPES:
        x, n = _padded(lengths)
        ref = torch_logits(model, x, n)
        assert np.abs(torch_logits(loaded, x, n) - ref).max() <= FP32_ATOL, lengths
        q = torch_logits(qloaded, x, n)
        assert q.shape == ref.shape and np.abs(q - ref).max() < 0.05, lengths
    # the original model was not quantised in place
    assert isinstance(model.head, torch.nn.Linear) and type(model.head) is torch.nn.Linear


def test_torchscript_metadata_via_torch_jit_load(random_checkpoint, tmp_path):
    _, model, meta = _model_and_meta(random_checkpoint("attn_bilstm"))
    path = str(tmp_path / "model.ts")
    torchscript_export.export_torchscript(model, meta, path)
    extra = {k: "" for k in meta.to_props()}
    torch.jit.load(path, _extra_files=extra)
    props = {k: v.decode("utf-8") for k, v in extra.items()}
    assert props == meta.to_props() == torchscript_export.read_metadata_props(path)


# ---------------------------------------------------------------------------------------------
# npz for the numpy backend: a reference implementation written from the documented layout
# ---------------------------------------------------------------------------------------------

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _npz_lstm(x, z, stack, num_layers):
    """Documented semantics, one item: ``x (n, F)`` -> ``(n, H)``."""
    for k in range(num_layers):
        w_ih, w_hh, b_ih, b_hh = (z[f"{stack}.l{k}.{p}"].astype(np.float64) for p in ("W_ih", "W_hh", "b_ih", "b_hh"))
        hsz = w_hh.shape[1]
        h, c, out = np.zeros(hsz), np.zeros(hsz), []
        for t in range(x.shape[0]):
            g = w_ih @ x[t] + b_ih + w_hh @ h + b_hh
            i, f, gg, o = g[:hsz], g[hsz:2 * hsz], g[2 * hsz:3 * hsz], g[3 * hsz:]
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(gg)
            h = _sigmoid(o) * np.tanh(c)
            out.append(h)
        x = np.stack(out)
    return x


def _npz_conv(x, weight, bias):
    """Documented conv: ``x (n, C_in)`` with zeros outside 0..n-1, ``weight (C_out, C_in, K)`` -> ``(n, C_out)``."""
    k = weight.shape[2]
    xp = np.concatenate([np.zeros((k // 2, x.shape[1])), x, np.zeros((k // 2, x.shape[1]))])
    return np.stack([bias + sum(weight[:, :, j] @ xp[t + j] for j in range(k)) for t in range(len(x))])


def _npz_att_pool(z, h):
    """Documented soft attention of res_lstm_att / conv_lstm over all rows of ``h (n, H)``."""
    s = h @ z["att.W"][0] + z["att.b"][0]
    w = np.exp(s - s.max())
    return (w / w.sum()) @ h


def _npz_forward(z, x):
    """Logits for one unpadded item ``x (n, F)`` from the npz dict ``z``."""
    layers = int(z["__num_layers__"])
    if str(z["__arch__"]) == "stats_linear":
        mean = x.mean(axis=0)
        std = np.sqrt(((x - mean) ** 2).mean(axis=0) + 1e-8)
        return z["head.W"] @ np.concatenate([mean, std]) + z["head.b"]
    if str(z["__arch__"]) == "res_lstm_att":
        y = (x + _npz_lstm(x, z, "lstm1", layers)) * z["bn1.scale"] + z["bn1.shift"]
        return z["head.W"] @ _npz_att_pool(z, _npz_lstm(y, z, "lstm2", layers)) + z["head.b"]
    if str(z["__arch__"]) == "conv_lstm":
        for i in range(int(z["__conv_layers__"])):
            x = np.maximum(_npz_conv(x, z[f"conv{i}.W"], z[f"conv{i}.b"]), 0.0)
        h = _npz_lstm(x, z, "lstm", layers)
        return z["head.W"] @ np.concatenate([_npz_att_pool(z, h), h.mean(axis=0)]) + z["head.b"]
    if str(z["__arch__"]) == "lstm":
        return z["head.W"] @ _npz_lstm(x, z, "lstm", layers)[-1] + z["head.b"]
    h = np.concatenate([_npz_lstm(x, z, "fwd", layers), _npz_lstm(x[::-1], z, "bwd", layers)[::-1]], axis=1)
    s = (z["att_score.W"] @ np.tanh(h @ z["att_proj.W"].T + z["att_proj.b"]).T)[0]
    w = np.exp(s - s.max())
    pooled = (w / w.sum()) @ h
    return z["head.W"] @ pooled + z["head.b"]


@pytest.mark.parametrize("arch", ARCHS)
def test_npz_layout_matches_pytorch(random_checkpoint, tmp_path, arch):
    ckpt, model, meta = _model_and_meta(random_checkpoint(arch))
    path = str(tmp_path / "model.npz")
    numpy_export.export_numpy(ckpt.state_dict, ckpt.model_config, meta, path)
    with np.load(path, allow_pickle=False) as npz:
        z = {k: npz[k] for k in npz.files}
    assert str(z["__format__"]) == "ser-edge-npz" and int(z["__format_version__"]) == 1
    assert all(v.dtype == np.float32 for k, v in z.items() if not k.startswith("__"))
    h = ckpt.model_config.hidden_size
    stack = "fwd" if arch == "attn_bilstm" else "lstm"
    assert z[f"{stack}.l0.W_ih"].shape == (4 * h, 40) and z[f"{stack}.l1.W_ih"].shape == (4 * h, h)
    x, n = _padded([37, 12, 1], seed=3)
    ref = torch_logits(model, x, n)
    ours = np.stack([_npz_forward(z, x[i, :n[i]].astype(np.float64)) for i in range(len(n))])
    assert np.abs(ours - ref).max() <= FP32_ATOL


def test_npz_stats_linear_layout_matches_pytorch(random_checkpoint, tmp_path):
    ckpt, model, meta = _model_and_meta(random_checkpoint("stats_linear"))
    path = str(tmp_path / "model.npz")
    numpy_export.export_numpy(ckpt.state_dict, ckpt.model_config, meta, path)
    with np.load(path, allow_pickle=False) as npz:
        z = {k: npz[k] for k in npz.files}
    assert {k for k in z if not k.startswith("__")} == NEW_NPZ_KEYS["stats_linear"]
    assert int(z["__num_layers__"]) == 0 and z["head.W"].shape == (4, 80)
    x, n = _padded([37, 12, 1], seed=3)
    ref = torch_logits(model, x, n)
    ours = np.stack([_npz_forward(z, x[i, :n[i]].astype(np.float64)) for i in range(len(n))])
    assert np.abs(ours - ref).max() <= FP32_ATOL


# ---------------------------------------------------------------------------------------------
# res_lstm_att and conv_lstm: BatchNorm folded at export; every format against PyTorch
# ---------------------------------------------------------------------------------------------

NEW_ARCHS = ("res_lstm_att", "conv_lstm")
#: Documented npz weights of the two (numpy_export's docstring), for trained(arch)'s config;
#: stats_linear (no LSTM, no BatchNorm) has its head only.
NEW_NPZ_KEYS = {
    "stats_linear": {"head.W", "head.b"},
    "res_lstm_att": {f"{s}.l0.{p}" for s in ("lstm1", "lstm2") for p in ("W_ih", "W_hh", "b_ih", "b_hh")}
    | {"bn1.scale", "bn1.shift", "att.W", "att.b", "head.W", "head.b"},
    "conv_lstm": {f"lstm.l0.{p}" for p in ("W_ih", "W_hh", "b_ih", "b_hh")}
    | {"conv0.W", "conv0.b", "conv1.W", "conv1.b", "att.W", "att.b", "head.W", "head.b"},
}


@pytest.mark.parametrize("arch", NEW_ARCHS)
def test_npz_folds_batchnorm_and_matches_pytorch(trained, tmp_path, arch):
    ckpt, model, meta = _model_and_meta(trained(arch)[0])
    stats = [m.running_var for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert stats and all(float((v - 1).abs().max()) > 0.05 for v in stats), "BatchNorm statistics never moved"
    path = str(tmp_path / "model.npz")
    numpy_export.export_numpy(ckpt.state_dict, ckpt.model_config, meta, path)
    with np.load(path, allow_pickle=False) as npz:
        z = {k: npz[k] for k in npz.files}
    assert {k for k in z if not k.startswith("__")} == NEW_NPZ_KEYS[arch]  # folded: no running statistics
    assert int(z["__format_version__"]) == 1 and int(z["__num_layers__"]) == 1
    assert arch != "conv_lstm" or int(z["__conv_layers__"]) == ckpt.model_config.conv_layers
    x, n = _padded([37, 12, 1], seed=3)
    ref = torch_logits(model, x, n)
    ours = np.stack([_npz_forward(z, x[i, :n[i]].astype(np.float64)) for i in range(len(n))])
    assert np.abs(ours - ref).max() <= FP32_ATOL


def _fp32_runners(out):
    """``{file: runner}`` of every fp32 artifact in ``out``, each opened as the device would."""
    from ser_edge.runtime.backends.numpy_lstm import NumpyLSTMBackend

    script = torch.jit.load(str(out / "model.ts"))
    return {"model.onnx": onnx_export.OnnxRunner(str(out / "model.onnx")),
            "model.ts": lambda f, n: torch_logits(script, f, n),
            "model.npz": NumpyLSTMBackend(str(out / "model.npz")).run}


@pytest.mark.slow
@pytest.mark.parametrize("arch", NEW_ARCHS + ("stats_linear",))
def test_new_archs_export_everywhere_and_pass_gates(trained, tmp_path, arch):
    path, ev = trained(arch)
    ckpt, model, _ = _model_and_meta(path)
    cfg, out = ckpt.model_config, tmp_path / "out"
    report = export_all(path, out, quantize=True, eval_data=ev)
    assert report.passed and _model_files(out) == sorted(MODEL_FILES)
    for a in report.artifacts:
        if a.precision == "fp32":
            assert a.max_abs_diff <= FP32_ATOL and a.top1_agreement == 1.0, a
        else:
            assert a.top1_agreement >= 0.98 and a.weighted_f1_delta >= -0.01, a
    # ONNX: native LSTM (and Conv) ops over symbolic batch and time; int8 keeps the LSTMs native
    proto = onnx.load(str(out / "model.onnx"))
    ops = [node.op_type for node in proto.graph.node]
    n_lstm = onnx_export.lstm_count(arch, cfg.num_layers)
    assert ops.count("LSTM") == n_lstm == {"res_lstm_att": 2, "stats_linear": 0}.get(arch, cfg.num_layers)
    assert ops.count("Conv") == (cfg.conv_layers if arch == "conv_lstm" else 0)
    assert "BatchNormalization" not in ops and {"Mul", "Add"} <= set(ops)  # eval BatchNorm = folded affine
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "time", 40]
    q_ops = [node.op_type for node in onnx.load(str(out / "model.int8.onnx")).graph.node]
    assert q_ops.count("DynamicQuantizeLSTM") == n_lstm and "LSTM" not in q_ops
    assert arch != "stats_linear" or (q_ops.count("MatMulInteger") == 1 and "Gemm" not in q_ops)  # int8 head
    # TorchScript int8: LSTMs and Linears dynamic int8, convolutions (and BatchNorm) stay fp32
    qmodel = torchscript_export.quantize_int8(model)
    assert type(qmodel.head) is not torch.nn.Linear
    assert all(type(c) is torch.nn.Conv1d for c in getattr(qmodel, "convs", []))
    # Padding invariance in every fp32 format: a batch of unequal lengths, junk in the padding,
    # gives each item's logits alone; both equal PyTorch's.
    x, n = _padded([37, 5, 1, 120], seed=4)
    for i, k in enumerate(n):
        x[i, k:] = 7.0
    ref = torch_logits(model, x, n)
    for name, run in _fp32_runners(out).items():
        batch = run(x, n)
        alone = np.concatenate([run(x[i:i + 1, :k], n[i:i + 1]) for i, k in enumerate(n)])
        assert np.abs(batch - alone).max() <= 1e-5, name
        assert np.abs(batch - ref).max() <= FP32_ATOL, name


# ---------------------------------------------------------------------------------------------
# the pipeline: metadata everywhere, parity report, gates
# ---------------------------------------------------------------------------------------------

def _props(path):
    if path.endswith(".onnx"):
        return onnx_export.read_metadata_props(path)
    if path.endswith(".ts"):
        return torchscript_export.read_metadata_props(path)
    return numpy_export.read_metadata_props(path)


def _runner(path):
    if path.endswith(".onnx"):
        return onnx_export.OnnxRunner(path)
    if path.endswith(".ts"):
        module = torch.jit.load(path)
        return lambda f, n: torch_logits(module, f, n)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_export_all_quantized_passes_gates(trained, tmp_path, arch):
    path, ev = trained(arch)
    ckpt = load_checkpoint(str(path))
    report = export_all(path, tmp_path / "out", quantize=True, eval_data=ev)
    out = tmp_path / "out"
    files = MODEL_FILES + (STREAM_FILES if arch == "lstm" else ())
    assert _model_files(out) == sorted(files) and not _leftovers(out)
    parity_json = json.loads((out / "parity.json").read_text())
    assert parity_json["passed"] and parity_json["gates_enforced"] and parity_json["failures"] == []
    assert parity_json["eval_set"]["n_clips"] == 64
    by_name = {a["name"]: a for a in parity_json["artifacts"]}
    assert set(by_name) == set(files)
    for name, a in by_name.items():
        assert a["size_bytes"] == os.path.getsize(out / name)
        if a["evaluated"]:
            assert a["latency_ms"] > 0
            if a["precision"] == "fp32":
                assert a["max_abs_diff"] <= FP32_ATOL and a["top1_agreement"] == 1.0
            else:
                assert a["top1_agreement"] >= 0.98 and a["weighted_f1_delta"] >= -0.01
    for a in ("model.onnx", "model.int8.onnx", "model.ts", "model.int8.ts"):
        assert by_name[a]["evaluated"]
    assert report.published == [str((out / a["name"]).resolve()) for a in parity_json["artifacts"]]
    assert "model.int8.onnx" in report.table()

    # every file carries the runtime's metadata, and its self-test holds on that very file
    for name in files:
        p = str(out / name)
        meta = ModelMetadata.from_props(_props(p), p)
        assert meta.labels == ckpt.labels and meta.feature_config == ckpt.feature_config
        assert meta.model_config == ckpt.model_config.to_dict()
        assert meta.quantization == ("dynamic-int8" if ".int8." in name else "none")
        assert meta.selftest is not None and len(meta.selftest.waveform) == 8000
        run = _runner(p)
        if run is not None:
            got = run(*selftest_input(meta.selftest, meta.feature_config))[0]
            assert np.abs(got - meta.selftest.logits).max() <= meta.selftest.atol, name
        if ".int8." not in name:
            assert meta.selftest.atol == pytest.approx(1e-3)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs ser-edge[tflite-export]")
def test_export_all_tflite(trained, tmp_path):
    path, ev = trained("lstm")
    export_all(path, tmp_path, formats="tflite", quantize=True, eval_data=ev)
    files = ["model.int8.tflite", "model.int8.tflite.json", "model.tflite", "model.tflite.json"]
    assert _model_files(tmp_path) == files and not _leftovers(tmp_path)
    d = json.loads((tmp_path / "parity.json").read_text())
    by_name = {a["name"]: a for a in d["artifacts"]}
    assert by_name["model.tflite"]["max_abs_diff"] <= FP32_ATOL and by_name["model.tflite"]["gate"] == "pass"
    assert by_name["model.int8.tflite"]["top1_agreement"] >= 0.98 and by_name["model.int8.tflite"]["gate"] == "pass"
    assert by_name["model.tflite.json"]["role"] == "metadata sidecar"
    for name, quant in (("model.tflite", "none"), ("model.int8.tflite", "dynamic-int8")):
        props = json.loads((tmp_path / (name + ".json")).read_text())
        assert ModelMetadata.from_props(props, name).quantization == quant


def test_default_heldout_set_is_synthetic_and_npz_parity(random_checkpoint, tmp_path):
    report = export_all(random_checkpoint("lstm"), tmp_path, formats="numpy,onnx")
    d = json.loads((tmp_path / "parity.json").read_text())
    assert d["eval_set"]["synthetic"] and d["eval_set"]["n_clips"] == 4 * 6
    assert any("synthetic" in n for n in d["eval_set"]["notes"])
    # FORMATS order; an lstm's stateful graph follows its plain graph
    assert [a["name"] for a in d["artifacts"]] == ["model.onnx", "model.stream.onnx", "model.npz"]
    npz = d["artifacts"][2]  # the runtime's numpy LSTM reproduces PyTorch from the npz
    assert npz["evaluated"] and npz["max_abs_diff"] <= FP32_ATOL and npz["gate"] == "pass"
    assert report.passed


def test_gate_failure_publishes_no_model(random_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(parity.GATES, "fp32_max_abs_diff", -1.0)  # nothing can pass this
    with pytest.raises(GateFailure, match="max \\|logit diff\\|") as info:
        export_all(random_checkpoint("lstm"), tmp_path, formats="onnx,torchscript")
    assert _model_files(tmp_path) == [] and not _leftovers(tmp_path)
    assert not (tmp_path / "parity.json").exists()  # the report of a failure never takes that name
    d = json.loads((tmp_path / "parity.failed.json").read_text())
    assert not d["passed"] and d["gates_enforced"] and d["published"] == []
    assert {a["gate"] for a in d["artifacts"]} == {"fail"} and {a["path"] for a in d["artifacts"]} == {None}
    assert info.value.report is not None and "fail" in info.value.report.table()


def test_no_gate_publishes_loudly(random_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(parity.GATES, "fp32_max_abs_diff", -1.0)
    with pytest.warns(UserWarning, match="parity gates NOT enforced"):
        report = export_all(random_checkpoint("lstm"), tmp_path, formats="onnx", gate=False)
    assert _model_files(tmp_path) == ["model.onnx", "model.stream.onnx"] and not report.passed
    d = json.loads((tmp_path / "parity.json").read_text())
    assert d["gates_enforced"] is False and d["passed"] is False and d["published"]


def test_failed_check_leaves_no_file(random_checkpoint, tmp_path, monkeypatch):
    # A check fails late (the npz is built after ONNX and TorchScript were written and checked):
    # none of the earlier, individually fine artifacts may appear either.
    def broken(*args, **kwargs):
        raise ExportError("simulated npz round-trip failure")

    (tmp_path / "keep.txt").write_text("user file")
    monkeypatch.setattr(pipeline.numpy_export, "export_numpy", broken)
    with pytest.raises(ExportError, match="simulated"):
        export_all(random_checkpoint("lstm"), tmp_path, quantize=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_failed_onnx_checker_leaves_no_file(random_checkpoint, tmp_path, monkeypatch):
    real = onnx_export.check_model_file
    calls = []

    def failing(path):
        calls.append(path)
        real(path)  # the file did exist and was valid at this point ...
        raise ExportError(f"{path}: simulated checker failure")  # ... but the check says no

    monkeypatch.setattr(onnx_export, "check_model_file", failing)
    with pytest.raises(ExportError, match="simulated checker failure"):
        export_all(random_checkpoint("attn_bilstm"), tmp_path / "out", formats="onnx")
    assert calls and not os.path.exists(calls[0])  # the staged file was cleaned up
    assert list((tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------------------------------------------
# refusing bad input
# ---------------------------------------------------------------------------------------------

def _bad_checkpoints(tmp_path, random_checkpoint):
    rnd = tmp_path / "random.pt"
    rnd.write_bytes(np.random.default_rng(0).bytes(4096))
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": build_model(ModelConfig(hidden_size=8, num_layers=1)).state_dict()}, foreign)
    good = load_checkpoint(str(random_checkpoint("lstm")))
    labels = tmp_path / "labels.pt"  # 3 labels for a 4-class model
    save_checkpoint(str(labels), Checkpoint(good.model_config, good.feature_config, good.labels[:3],
                                            good.state_dict, {}))
    weights = tmp_path / "weights.pt"  # config says 64 hidden units, weights have 32
    save_checkpoint(str(weights), Checkpoint(ModelConfig(**{**good.model_config.to_dict(), "hidden_size": 64}),
                                             good.feature_config, good.labels, good.state_dict, {}))
    return {"random bytes": rnd, "not ours": foreign, "labels": labels, "weights": weights}


def test_refuses_bad_checkpoints(random_checkpoint, tmp_path):
    expected = {"random bytes": r"not a ser-edge checkpoint \(not a torch file",
                "not ours": "not a ser-edge checkpoint",
                "labels": "3 labels but the model has 4 outputs", "weights": "weights do not match"}
    for kind, path in _bad_checkpoints(tmp_path, random_checkpoint).items():
        out = tmp_path / f"out-{kind.replace(' ', '-')}"
        with pytest.raises(CheckpointError, match=expected[kind]):
            export_all(path, out)
        assert not out.exists() or list(out.iterdir()) == [], kind


def test_unnormalised_checkpoint_is_refused(random_checkpoint, tmp_path):
    good = load_checkpoint(str(random_checkpoint("lstm")))
    path = tmp_path / "raw.pt"
    save_checkpoint(str(path), Checkpoint(good.model_config, FeatureConfig(), good.labels, good.state_dict, {}))
    with pytest.raises(ExportError, match="normalisation"):
        export_all(path, tmp_path / "out")


def test_parse_formats():
    assert parse_formats("onnx, numpy,onnx") == ("onnx", "numpy")
    assert parse_formats(["TorchScript"]) == ("torchscript",)
    for bad in ("onnx,keras", "", ","):
        with pytest.raises(ExportError, match="valid formats: onnx, torchscript, numpy, tflite"):
            parse_formats(bad)


def test_tflite_without_tensorflow_is_a_clean_error(random_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow now fails
    with pytest.raises(ExportError, match=r"install ser-edge\[tflite-export\]"):
        export_all(random_checkpoint("lstm"), tmp_path / "out", formats="onnx,tflite")
    assert not (tmp_path / "out").exists()


@pytest.mark.realdata
def test_heldout_set_from_checkpoint_test_speakers(ravdess_root, random_checkpoint):
    from ser_edge.data import load_corpus

    ckpt = load_checkpoint(str(random_checkpoint("lstm")))
    speakers = sorted({u.speaker for u in load_corpus("ravdess", str(ravdess_root))})
    ev = eval_set_from_corpus("ravdess", str(ravdess_root), ckpt.feature_config, ckpt.labels,
                              {"split": {"train": speakers[1:], "val": [], "test": speakers[:1]}})
    # one actor: 4 neutral + 8 each of happy, sad, angry (the model's four labels)
    assert len(ev.features) == 28 and not ev.synthetic and speakers[0] in ev.source
    assert np.bincount(ev.labels).tolist() == [4, 8, 8, 8]
    assert all(f.shape[1] == 40 and f.dtype == np.float32 for f in ev.features)
    assert ev.waveform is not None and len(ev.waveform) == 8000
    assert any("labels the model does not know" in n for n in ev.notes)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def cli():
    import typer
    from typer.testing import CliRunner

    from ser_edge.cli import export as export_cli

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app (a callback keeps `export` a subcommand)."""

    export_cli.register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_cli_export(cli, random_checkpoint, tmp_path):
    res = cli("export", random_checkpoint("lstm"), "--out", tmp_path, "--formats", "onnx,numpy")
    assert res.exit_code == 0, res.output
    assert "model.onnx" in res.stdout and "held-out set: synthetic" in res.stdout and "parity.json" in res.stdout
    assert _model_files(tmp_path) == ["model.npz", "model.onnx", "model.stream.onnx"]
    assert (tmp_path / "parity.json").is_file()


def test_cli_bad_formats_and_flags(cli, random_checkpoint, tmp_path):
    res = cli("export", random_checkpoint("lstm"), "--out", tmp_path, "--formats", "onnx,savedmodel")
    assert isinstance(res.exception, ExportError) and "valid formats" in str(res.exception)
    res = cli("export", random_checkpoint("lstm"), "--out", tmp_path, "--data", "ravdess")
    assert res.exit_code == 2 and "--root" in res.output
    assert list(tmp_path.iterdir()) == []


def test_cli_no_gate_warns_on_stderr(cli, random_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(parity.GATES, "fp32_max_abs_diff", -1.0)
    with pytest.warns(UserWarning, match="parity gates NOT enforced"):  # the library's, besides the CLI's line
        res = cli("export", random_checkpoint("lstm"), "--out", tmp_path, "--formats", "onnx", "--no-gate")
    assert res.exit_code == 0, res.output
    assert "parity gates are NOT enforced" in res.stderr and "published despite failed parity gates" in res.stderr
    assert json.loads((tmp_path / "parity.json").read_text())["gates_enforced"] is False
    res = cli("export", random_checkpoint("lstm"), "--out", tmp_path / "gated", "--formats", "onnx")
    assert isinstance(res.exception, GateFailure) and "fail" in res.stdout
    assert _model_files(tmp_path / "gated") == []
