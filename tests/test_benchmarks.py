"""benchmarks/run.py: a tiny end-to-end smoke run (JSON complete, numbers positive, pipelines
agree) plus its model discovery and timing helpers. Never asserts anything about speed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    """benchmarks/run.py as a module; its import-time thread settings are undone afterwards."""
    saved = dict(os.environ)
    sys.path.insert(0, str(RUN.parent))
    try:
        spec = importlib.util.spec_from_file_location("ser_edge_bench_run", RUN)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(RUN.parent))
        os.environ.clear()
        os.environ.update(saved)


# ---------------------------------------------------------------------------------------
# Helpers (fast)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("model.int8.onnx", ("onnx-int8", "model")), ("model.onnx", ("onnx-fp32", "model")),
    ("ser-edge-ravdess.int8.tflite", ("tflite-int8", "ser-edge-ravdess")), ("m.tflite", ("tflite-fp32", "m")),
    ("model.int8.ts", ("ts-int8", "model")), ("model.ts", ("ts-fp32", "model")), ("model.npz", ("npz", "model")),
    ("ser-edge-ravdess.pt", ("checkpoint", "ser-edge-ravdess")),
    ("model.tflite.json", None), ("parity.json", None), (".onnx", None),
])
def test_classify(bench, name, expected):
    assert bench.classify(name) == expected


def _touch(d: Path, *names: str) -> None:
    for n in names:
        (d / n).write_bytes(b"x")


def test_find_models_prefers_the_shipped_name_and_refuses_ambiguity(bench, tmp_path):
    _touch(tmp_path, "ser-edge-ravdess.onnx", "ser-edge-ravdess.int8.onnx", "ser-edge-ravdess.pt",
           "other.onnx", "parity.json")
    found = bench.find_models(tmp_path)
    assert {k: p.name for k, p in found.items()} == {
        "onnx-fp32": "ser-edge-ravdess.onnx", "onnx-int8": "ser-edge-ravdess.int8.onnx",
        "checkpoint": "ser-edge-ravdess.pt"}
    assert bench.find_models(tmp_path, "other") == {"onnx-fp32": tmp_path / "other.onnx"}

    ambiguous = tmp_path / "two"
    ambiguous.mkdir()
    _touch(ambiguous, "a.onnx", "b.npz")
    with pytest.raises(bench.BenchError, match="several models"):
        bench.find_models(ambiguous)
    only_ckpt = tmp_path / "ckpt"
    only_ckpt.mkdir()
    _touch(only_ckpt, "model.pt")
    with pytest.raises(bench.BenchError, match="no runtime model"):
        bench.find_models(only_ckpt)


def test_interleaved_calls_everything_equally_and_rotates_the_order(bench):
    calls = []
    fns = {name: (lambda x, name=name: calls.append((name, x))) for name in "abc"}
    times = bench.interleaved_ms(fns, [1, 2], repeat=3)
    assert calls[:3] == [("a", 1), ("b", 1), ("c", 1)]  # one warm-up each
    timed = calls[3:]
    assert len(timed) == 3 * 2 * 3
    assert {name: sum(n == name for n, _ in timed) for name in "abc"} == {"a": 6, "b": 6, "c": 6}
    firsts = [timed[i][0] for i in range(0, len(timed), 3)]
    assert set(firsts) == {"a", "b", "c"}  # no pipeline always goes first
    for name in "abc":
        assert len(times[name]["wall"]) == len(times[name]["cpu"]) == 6
        assert all(t >= 0 for t in times[name]["wall"] + times[name]["cpu"])


def test_ratio_and_synthetic_clips(bench, tmp_path):
    assert bench.ratio(10.0, 2.0) == 5.0 and bench.ratio(None, 2.0) is None and bench.ratio(1.0, 0.0) is None
    paths = bench.synthetic_clips(tmp_path, 3, 16000)
    from ser_edge.runtime.audio import read_wav

    lengths = []
    for p in paths:
        y, sr = read_wav(p)
        assert sr == 16000 and np.abs(y).max() > 0.05
        lengths.append(len(y))
    assert lengths == sorted(lengths) and lengths[0] == 24000 and lengths[-1] == 56000


@pytest.mark.realdata
def test_ravdess_clips_spread_over_actors(bench, ravdess_root):
    clips = bench.ravdess_clips(ravdess_root, 6)
    assert len(clips) == 6 and len(set(clips)) == 6
    assert all(c.is_file() and ravdess_root in c.parents for c in clips)
    assert len({c.parent.name for c in clips}) >= 5


def test_missing_model_is_a_clean_error(tmp_path):
    proc = subprocess.run([sys.executable, str(RUN), "--model-dir", str(tmp_path), "--json", str(tmp_path / "o.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "error: no runtime model" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.json").exists()


# ---------------------------------------------------------------------------------------
# Smoke run (exports a tiny model, spawns a few processes)
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_export(random_checkpoint, tmp_path_factory):
    pytest.importorskip("librosa")
    pytest.importorskip("onnxruntime")
    from ser_edge.export import export_all

    ckpt = random_checkpoint("lstm", hidden_size=16, num_layers=1, n_classes=4)
    out = tmp_path_factory.mktemp("bench-export")
    with warnings.catch_warnings():
        # an untrained model may miss the int8 gates (a warning with gate=False); only the files matter here
        warnings.simplefilter("ignore")
        export_all(str(ckpt), str(out), formats=("onnx", "numpy"), quantize=True, gate=False)
    return ckpt, out


@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(bench, tiny_export, random_checkpoint):
    ckpt, model_dir = tiny_export
    models = bench.find_models(model_dir)
    assert bench.check_same_model(ckpt, models)["n_mfcc"] == 40
    other = random_checkpoint("lstm", hidden_size=16, num_layers=1, n_classes=3)
    with pytest.raises(bench.BenchError, match="not the same model"):
        bench.check_same_model(other, models)


@pytest.mark.slow
def test_smoke_run_writes_every_section(tiny_export, tmp_path):
    ckpt, model_dir = tiny_export
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--model-dir", str(model_dir), "--checkpoint", str(ckpt), "--clips", "2",
         "--repeat", "1", "--cold-repeat", "1", "--cold-warmup", "0", "--synthetic", "--json", str(out),
         "--markdown"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())

    assert res["clips"]["source"] == "synthetic" and res["clips"]["n"] == 2
    assert "synthetic speech-like clips" in proc.stdout
    assert "| pipeline |" in proc.stdout and "**Model size on disk**" in proc.stdout

    m = res["mfcc"]
    for impl in ("numpy", "librosa"):
        assert m[impl]["wall_ms"]["median"] > 0 and m[impl]["cpu_ms"]["median"] >= 0
    assert m["ratio_librosa_over_numpy"]["wall"] > 0
    assert m["max_rel_diff"] < 1e-4  # same parameters -> same features

    e2e = {r["pipeline"]: r for r in res["end_to_end"]["pipelines"]}
    assert list(e2e)[0] == "librosa + PyTorch"
    assert {"ser-edge onnxruntime int8", "ser-edge onnxruntime fp32", "ser-edge numpy fp32"} <= set(e2e)
    for r in e2e.values():
        assert r["wall_ms"]["median"] > 0 and r["wall_ms"]["n"] == 2
        assert r["ratio_vs_reference"]["wall"] > 0 and r["rtf"]["wall"] > 0
    for name in ("ser-edge onnxruntime fp32", "ser-edge numpy fp32"):
        # same weights, same features: fp32 agrees with PyTorch eager
        assert e2e[name]["max_abs_logit_diff"] < 1e-3 and e2e[name]["top1_agreement"] == 1.0

    cold = {r["pipeline"]: r for r in res["cold_start"]["pipelines"]}
    assert set(cold) == set(e2e)
    for name, r in cold.items():
        assert r["wall_ms"]["median"] > 0 and r["peak_rss_mb"] > 0 and r["label_matches_warm_run"]
        if r["kind"] == "runtime":
            assert r["heavy_modules"] == [], name  # the runtime never imports torch/librosa/scipy
    assert {"torch", "librosa"} <= set(cold["librosa + PyTorch"]["heavy_modules"])

    sizes = {r["key"]: r for r in res["sizes"]}
    assert {"onnx-fp32", "onnx-int8", "npz", "checkpoint", "state_dict"} <= set(sizes)
    assert all(r["bytes"] > 0 and r["ratio_vs_checkpoint"] > 0 for r in sizes.values())
