"""TFLite export (``ser_edge.export.tflite_export``) and the LiteRT backend: fp32 parity with
PyTorch over dynamic batch/time, int8 top-1 agreement, metadata (embedded + sidecar), the
runtime's loader and Recognizer. Converts once per architecture (module-scoped fixtures)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as the exporter does; must precede the import
pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from ser_edge.checkpoint import Checkpoint, save_checkpoint  # noqa: E402
from ser_edge.export import tflite_export as tfl  # noqa: E402
from ser_edge.export.common import build_metadata, make_selftest, speechlike, torch_logits  # noqa: E402
from ser_edge.export.errors import ExportError  # noqa: E402
from ser_edge.models import ModelConfig, build_model  # noqa: E402
from ser_edge.runtime.backends import load_backend  # noqa: E402
from ser_edge.runtime.backends.litert import (  # noqa: E402
    DIGEST_KEY,
    LiteRTBackend,
    TFLiteInterpreter,
    file_digest,
    read_embedded_props,
    sidecar_path,
)
from ser_edge.runtime.features import FeatureConfig, RunningStats, mfcc, normalise  # noqa: E402
from ser_edge.runtime.metadata import MetadataError  # noqa: E402

pytestmark = pytest.mark.slow

ARCHS = ("lstm", "attn_bilstm", "res_lstm_att", "conv_lstm", "stats_linear")
#: Model sizes: hidden 32 x 2 layers, except the BatchNorm architectures, kept tiny (one conversion
#: each is the slow part) yet with every weight matrix >= 1024 values, i.e. int8 after conversion.
SIZES = {"res_lstm_att": {"hidden_size": 16},
         "conv_lstm": {"hidden_size": 16, "num_layers": 1, "conv_channels": 16, "conv_kernel": 5}}
FP32_ATOL = 1e-4
INT8_MIN_AGREEMENT = 0.98
#: Padded batches probed: 1, 37 and 300 frames alone, and batches of 3 with unequal lengths.
BATCHES = ([1], [37], [300], [37, 1, 16], [300, 37, 1])
#: Synthetic "emotions": speech-like clips that differ in pitch and brightness (f0 Hz, harmonics).
VOICES = ((110.0, 4), (170.0, 8), (250.0, 12), (360.0, 20))


# --- data and a tiny trained model ----------------------------------------------------------

def _clips(n: int, seed: int):
    """``n`` speech-like clips of 0.25-0.7 s with jittered pitch: ``(list of (n_samples,), (n,) labels)``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(VOICES)
    clips = []
    for i, c in enumerate(labels):
        f0, harmonics = VOICES[c]
        clips.append(speechlike(rng.uniform(0.25, 0.7), f0=f0 * rng.uniform(0.92, 1.08),
                                syllable_hz=rng.uniform(2.0, 5.0), n_harmonics=harmonics, seed=seed * 1000 + i))
    return clips, labels


def _pad(feats):
    """List of ``(T_i, F)`` -> ``((B, max T, F) float32 zero-padded, (B,) int64)``."""
    lengths = np.array([len(f) for f in feats], np.int64)
    x = np.zeros((len(feats), lengths.max(), feats[0].shape[1]), np.float32)
    for i, f in enumerate(feats):
        x[i, :len(f)] = f
    return x, lengths


def _train(model, x, lengths, labels, steps=80, seed=0):
    """Adam on random minibatches; a fixed step count (no convergence loop)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, lt, yt = torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(labels)
    model.train()
    for _ in range(steps):
        idx = torch.randperm(len(yt), generator=g)[:32]
        loss = torch.nn.functional.cross_entropy(model(xt[idx], lt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def data():
    """Normalised MFCCs of train / held-out clips, and the normalised FeatureConfig."""
    base = FeatureConfig()
    train_clips, train_y = _clips(96, seed=1)
    test_clips, test_y = _clips(100, seed=2)
    raw_train = [mfcc(y, base) for y in train_clips]
    stats = RunningStats()
    for f in raw_train:
        stats.update(f)
    fcfg = base.with_stats(*stats.result())
    train = _pad([normalise(f, fcfg) for f in raw_train])
    test = _pad([normalise(mfcc(y, fcfg), fcfg) for y in test_clips])
    return fcfg, (*train, train_y.astype(np.int64)), (*test, test_y.astype(np.int64))


@pytest.fixture(scope="module", params=ARCHS)
def exported(request, data, tmp_path_factory):
    """``(ckpt, torch model, props, {"fp32": path, "int8": path})`` for one trained tiny model."""
    fcfg, train, _ = data
    torch.manual_seed(0)
    size = {"hidden_size": 32, "num_layers": 2, **SIZES.get(request.param, {})}
    mcfg = ModelConfig(arch=request.param, n_features=fcfg.n_mfcc, n_classes=len(VOICES), dropout=0.0, **size)
    model = _train(build_model(mcfg), *train)
    labels = ["neutral", "happy", "sad", "angry"]
    ckpt = Checkpoint(mcfg, fcfg, labels, model.state_dict(), {"note": "test_tflite"})
    save_checkpoint(str(tmp_path_factory.mktemp("ckpt") / "model.pt"), ckpt)
    props = build_metadata(ckpt, make_selftest(model, fcfg, speechlike(0.5))).to_props()
    out = tmp_path_factory.mktemp(f"tflite-{request.param}")
    written = tfl.export_tflite(ckpt, out, quantize=True, metadata_props=props)
    assert [p.name for p in written] == ["model.tflite", "model.tflite.json",
                                         "model.int8.tflite", "model.int8.tflite.json"]
    return ckpt, model, props, {"fp32": written[0], "int8": written[2]}


def _random_batch(lengths, n_features=40, seed=0):
    rng = np.random.default_rng(seed)
    return _pad([rng.standard_normal((n, n_features)).astype(np.float32) for n in lengths])


# --- parity ----------------------------------------------------------------------------------

def test_fp32_parity_over_dynamic_batch_and_time(exported):
    ckpt, model, _, paths = exported
    for i, lengths in enumerate(BATCHES):
        x, n = _random_batch(lengths, seed=i)
        ref = torch_logits(model, x, n)
        got = tfl.run_tflite(paths["fp32"], x, n)
        assert got.shape == ref.shape == (len(lengths), ckpt.model_config.n_classes)
        assert np.abs(got - ref).max() <= FP32_ATOL, f"lengths {lengths}"


def test_padding_does_not_change_a_prediction(exported):
    _, _, _, paths = exported
    run = TFLiteInterpreter(str(paths["fp32"]))
    x, n = _random_batch([23], seed=7)
    alone = run(x, n)
    padded = np.concatenate([x, np.full((1, 40, 40), 9.0, np.float32)], axis=1)  # junk, not zeros
    np.testing.assert_allclose(run(padded, n), alone, atol=1e-5)


def test_repeated_calls_are_stateless(exported):
    """Same input, interleaved with other shapes, gives the same logits (no state carried
    between invocations, allocation cache keyed correctly)."""
    _, _, _, paths = exported
    run = TFLiteInterpreter(str(paths["int8"]))
    x, n = _random_batch([37, 5], seed=3)
    first = run(x, n)
    run(*_random_batch([300], seed=4))
    np.testing.assert_array_equal(run(x, n), first)
    np.testing.assert_array_equal(run(x, n), first)


def test_int8_top1_agreement_on_realistic_inputs(exported, data):
    _, model, _, paths = exported
    _, _, (x, n, y) = data
    ref = torch_logits(model, x, n)
    assert (ref.argmax(1) == y).mean() >= 0.9, "the tiny model did not learn; agreement would be meaningless"
    run = TFLiteInterpreter(str(paths["int8"]))
    got = np.concatenate([run(x[i:i + 1, :n[i]], n[i:i + 1]) for i in range(len(n))])  # batch 1, as on device
    agreement = (got.argmax(1) == ref.argmax(1)).mean()
    assert agreement >= INT8_MIN_AGREEMENT
    assert np.abs(got - ref).max() > 0, "int8 model computes exactly fp32: weights were not quantised"


def _large_constants(path):
    """``{dtype name: count}`` of constant tensors with >= 1024 elements (the weight matrices;
    dynamic-range quantisation leaves smaller ones in float), over all subgraphs."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    counts = {}
    for graph in model.subgraphs:
        for t in graph.tensors:
            data = model.buffers[t.buffer].data
            if data is not None and t.shape is not None and np.prod(t.shape) >= 1024:
                counts[names[t.type]] = counts.get(names[t.type], 0) + 1
    return counts


def test_graph_is_builtin_ops_with_int8_weights(exported):
    ckpt, _, _, paths = exported
    cfg = ckpt.model_config
    for path in paths.values():
        ops = tfl.op_types(path)
        assert ("WHILE" in ops) == (cfg.arch != "stats_linear") and "FULLY_CONNECTED" in ops  # loop = LSTM
        assert not [op for op in ops if op.startswith("Flex") or not op.isupper()], ops
    n_matrices = {"lstm": 2 * cfg.num_layers, "attn_bilstm": 4 * cfg.num_layers,  # kernel + recurrent per layer
                  "res_lstm_att": 4,  # two single-layer LSTMs
                  "conv_lstm": cfg.conv_layers + 2 * cfg.num_layers,
                  "stats_linear": 0}[cfg.arch]  # head (4, 80) < 1024 values: float (see the next test)
    assert _large_constants(paths["fp32"]).get("FLOAT32", 0) >= n_matrices
    int8 = _large_constants(paths["int8"])
    assert "FLOAT32" not in int8 and int8.get("INT8", 0) >= n_matrices
    if n_matrices:
        assert paths["int8"].stat().st_size < paths["fp32"].stat().st_size


def test_stats_linear_head_of_1024_values_is_int8(tmp_path):
    """stats_linear's only weight is its head ``(C, 2F)``: dynamic-range int8 quantises it once it
    reaches the converter's 1024 values (here 13 classes x 80), and the logits then move a little."""
    torch.manual_seed(3)
    mcfg = ModelConfig(arch="stats_linear", n_features=40, n_classes=13, dropout=0.0)
    model = build_model(mcfg).eval()
    fcfg = FeatureConfig().with_stats(np.zeros(40), np.ones(40))
    ckpt = Checkpoint(mcfg, fcfg, [f"c{i}" for i in range(13)], model.state_dict(), {"note": "test_tflite"})
    for name, quantize in (("fp32.tflite", False), ("int8.tflite", True)):
        (tmp_path / name).write_bytes(tfl.convert(ckpt, quantize=quantize))
    assert _large_constants(tmp_path / "fp32.tflite") == {"FLOAT32": 1}
    assert _large_constants(tmp_path / "int8.tflite") == {"INT8": 1}
    x, n = _random_batch([37, 1, 16], seed=2)
    ref = torch_logits(model, x, n)
    fp32, int8 = (TFLiteInterpreter(str(tmp_path / f))(x, n) for f in ("fp32.tflite", "int8.tflite"))
    assert np.abs(fp32 - ref).max() <= FP32_ATOL
    assert 0 < np.abs(int8 - fp32).max() < 0.05 * np.abs(ref).max()


# --- metadata ----------------------------------------------------------------------------------

def test_metadata_round_trip(exported):
    _, _, props, paths = exported
    fp32 = LiteRTBackend(str(paths["fp32"]))
    assert fp32.metadata.to_props() == props
    assert tfl.read_metadata_props(paths["fp32"]) == props
    assert json.loads(open(sidecar_path(str(paths["fp32"]))).read()) == {**props, DIGEST_KEY: file_digest(
        paths["fp32"].read_bytes())}
    int8 = LiteRTBackend(str(paths["int8"]))
    assert int8.metadata.quantization == tfl.INT8_QUANTIZATION
    assert int8.metadata.labels == fp32.metadata.labels
    assert int8.metadata.feature_config == fp32.metadata.feature_config
    assert int8.metadata.selftest.atol > fp32.metadata.selftest.atol
    assert json.loads(open(sidecar_path(str(paths["int8"]))).read()) == {**int8.metadata.to_props(), DIGEST_KEY:
                                                                          file_digest(paths["int8"].read_bytes())}


def test_embed_props_replaces_the_old_entry(exported):
    _, _, props, paths = exported
    data = paths["fp32"].read_bytes()
    again = tfl.embed_props(data, {"ser_edge.labels": "[]"})
    assert read_embedded_props(again) == {"ser_edge.labels": "[]"}


def _without_embedded(src, dst):
    """Copy of ``src`` whose flatbuffer has no ser-edge metadata entry."""
    def drop(obj, schema):
        obj.metadata = [m for m in obj.metadata if m.name not in (b"ser_edge", "ser_edge")]

    dst.write_bytes(tfl.edit_flatbuffer(src.read_bytes(), drop))
    return dst


def test_sidecar_is_the_fallback_and_neither_is_refused(exported, tmp_path):
    _, _, props, paths = exported
    bare = _without_embedded(paths["fp32"], tmp_path / "bare.tflite")
    assert read_embedded_props(bare.read_bytes()) is None
    with pytest.raises(MetadataError, match="no ser-edge metadata"):
        LiteRTBackend(str(bare))
    sidecar = json.loads(open(sidecar_path(str(paths["fp32"]))).read())
    Path(sidecar_path(str(bare))).write_text(json.dumps({**sidecar, DIGEST_KEY: file_digest(bare.read_bytes())}))
    assert LiteRTBackend(str(bare)).metadata.to_props() == props


def test_not_a_tflite_file_is_a_metadata_error(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(MetadataError, match="not a TFLite model"):
        LiteRTBackend(str(junk))
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(b"\x10\x00\x00\x00TFL3" + b"\xff" * 8)
    with pytest.raises(MetadataError):
        LiteRTBackend(str(truncated))


def _fake_tflite_runtime(monkeypatch, interpreter_class):
    """Hide ai_edge_litert and install a ``tflite_runtime.interpreter`` with ``interpreter_class``."""
    import types

    module = types.ModuleType("tflite_runtime.interpreter")
    module.Interpreter = interpreter_class
    package = types.ModuleType("tflite_runtime")
    package.interpreter = module
    for name, value in (("ai_edge_litert", None), ("ai_edge_litert.interpreter", None),
                        ("tflite_runtime", package), ("tflite_runtime.interpreter", module)):
        monkeypatch.setitem(sys.modules, name, value)


def test_tflite_runtime_is_the_fallback_engine(exported, monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    _, _, _, paths = exported
    expected = TFLiteInterpreter(str(paths["fp32"]))(*_random_batch([12], seed=1))
    _fake_tflite_runtime(monkeypatch, Interpreter)  # same engine under the fallback's name
    run = TFLiteInterpreter(str(paths["fp32"]))
    assert run.engine == "tflite_runtime"
    np.testing.assert_array_equal(run(*_random_batch([12], seed=1)), expected)


def test_old_engine_refusing_int8_names_the_needed_version(exported, monkeypatch):
    class OldInterpreter:
        def __init__(self, **kwargs):
            raise ValueError("Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'")

    ckpt, _, _, paths = exported
    _fake_tflite_runtime(monkeypatch, OldInterpreter)
    # int8 weights need the hybrid kernels of TFLite 2.x; stats_linear's small head stayed float
    major = 1 if ckpt.model_config.arch == "stats_linear" else 2
    with pytest.raises(MetadataError, match=rf"needs TFLite runtime >= {major}\.\d+.*tflite_runtime"):
        LiteRTBackend(str(paths["int8"]))


def test_no_engine_is_a_backend_error(exported, monkeypatch):
    from ser_edge.runtime.backends.base import BackendError

    _, _, _, paths = exported
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(BackendError, match=r"pip install 'ser-edge\[tflite\]'"):
        LiteRTBackend(str(paths["fp32"]))


# --- runtime integration --------------------------------------------------------------------

def test_load_backend_and_recognizer(exported):
    from ser_edge.runtime.recognizer import Recognizer
    from ser_edge.runtime.selftest import run_selftest

    ckpt, model, _, paths = exported
    for path in paths.values():
        backend = load_backend(str(path))
        assert isinstance(backend, LiteRTBackend) and backend.name == "litert"
        rec = Recognizer.load(str(path), backend="litert")
        result = run_selftest(rec)
        assert result.passed and result.top1_agrees, result
        clip = speechlike(0.8, f0=250.0, n_harmonics=12, seed=5)
        feats = normalise(mfcc(clip, ckpt.feature_config), ckpt.feature_config)
        ref = torch_logits(model, feats[None], np.array([len(feats)], np.int64))[0]
        pred = rec.predict(clip, sample_rate=16000)
        assert pred.label == ckpt.labels[int(ref.argmax())]
        assert set(pred.probabilities) == set(ckpt.labels)


def test_export_without_props_builds_them(random_checkpoint, tmp_path):
    from ser_edge.checkpoint import load_checkpoint

    ckpt = load_checkpoint(str(random_checkpoint("lstm")))
    written = tfl.export_tflite(ckpt, str(tmp_path), quantize=False)
    assert [p.name for p in written] == ["model.tflite", "model.tflite.json"]
    meta = LiteRTBackend(str(written[0])).metadata
    assert meta.labels == ckpt.labels and meta.quantization == "none"
    assert meta.feature_config == ckpt.feature_config and meta.selftest is not None


def test_missing_tensorflow_is_a_clean_export_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow now fails
    with pytest.raises(ExportError, match=r"pip install 'ser-edge\[tflite-export\]'"):
        tfl.import_tensorflow()
