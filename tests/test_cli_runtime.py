"""``ser-edge predict / listen / bench / selftest`` through the real entry point (exit codes,
stdout/stderr), on a small exported model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import run_cli

from ser_edge.runtime import Recognizer
from ser_edge.runtime.audio import write_wav

#: sitecustomize for a subprocess: a device without onnxruntime (32-bit Pi OS has no wheel).
HIDE_ONNXRUNTIME = """
import importlib.abc, sys

class NoOnnxRuntime(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoOnnxRuntime())
"""


@pytest.fixture(scope="module")
def models(exported_models):
    """Directory with model.onnx, model.int8.onnx and model.npz (the session's export)."""
    return exported_models("lstm")


@pytest.fixture
def wavs(tmp_path, speechlike):
    """good.wav (16 kHz), good44.wav (44.1 kHz), and the bad ones."""
    write_wav(tmp_path / "good.wav", speechlike, 16000)
    write_wav(tmp_path / "good44.wav", speechlike, 44100)  # a 44.1 kHz file (content pitched, still speech-like)
    write_wav(tmp_path / "short.wav", speechlike[:800], 16000)
    write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    write_wav(tmp_path / "rate.wav", speechlike, 500)  # a header claiming 500 Hz
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    return tmp_path




def test_predict_text_output(capsys, models, wavs):
    code, out, err = run_cli(capsys, "predict", wavs / "good.wav", wavs / "good44.wav", "-m", models / "model.onnx")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(wavs / "good.wav"))
    labels = Recognizer.load(models / "model.onnx").labels
    assert all(line.split("\t")[1] in labels for line in lines)


def test_predict_bad_files_reported_and_others_processed(capsys, models, wavs):
    bad = ["short.wav", "silent.wav", "rate.wav", "empty.wav", "corrupt.wav", "missing.wav"]
    code, out, err = run_cli(capsys, "predict", wavs / "good.wav", *[wavs / b for b in bad], wavs / "good44.wav",
                             "--model", models / "model.int8.onnx", "--json")
    assert code == 1
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["file"] for r in records] == [str(wavs / f) for f in ["good.wav", *bad, "good44.wav"]]
    assert [("error" in r) for r in records] == [False] + [True] * len(bad) + [False]
    assert abs(sum(records[0]["probabilities"].values()) - 1) < 1e-4
    err_lines = err.strip().splitlines()
    assert len(err_lines) == len(bad) and all(line.startswith("error: ") for line in err_lines)
    for name, word in zip(bad, ["too short", "silent", "sample rate", "empty", "", "no such file"]):
        assert any(name in line and word in line for line in err_lines), (name, err_lines)
    assert "Traceback" not in err


def test_predict_numpy_backend_agrees_with_onnxruntime(capsys, models, wavs):
    _, a, _ = run_cli(capsys, "predict", wavs / "good.wav", "--model", models / "model.onnx", "--json")
    code, b, err = run_cli(capsys, "predict", wavs / "good.wav", "--model", models / "model.npz", "--json",
                           "--backend", "numpy")
    assert code == 0, err
    la, lb = json.loads(a)["logits"], json.loads(b)["logits"]
    assert np.max(np.abs(np.subtract(la, lb))) <= 1e-4


@pytest.mark.parametrize("content", [b"", b"not a model at all" * 100])
def test_predict_with_a_broken_model_is_one_line(capsys, tmp_path, wavs, content):
    (tmp_path / "model.onnx").write_bytes(content)
    code, out, err = run_cli(capsys, "predict", wavs / "good.wav", "--model", tmp_path / "model.onnx")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "model.onnx" in err


def test_predict_backend_mismatch(capsys, models, wavs):
    code, _, err = run_cli(capsys, "predict", wavs / "good.wav", "--model", models / "model.onnx", "--backend", "numpy")
    assert code == 2 and "reads .npz files" in err


def test_selftest(capsys, models):
    for name in ("model.onnx", "model.int8.onnx", "model.npz"):
        code, out, err = run_cli(capsys, "selftest", "--model", models / name)
        assert code == 0 and out.startswith("PASS"), (name, out, err)
        assert str(models / name) in out and err == ""
    code, out, _ = run_cli(capsys, "selftest", "-m", models / "model.npz", "--json")
    res = json.loads(out)
    assert res["passed"] and res["max_abs_diff"] <= res["atol"]


def test_positional_model_is_a_deprecated_alias(capsys, models):
    code, out, err = run_cli(capsys, "selftest", models / "model.npz")
    assert code == 0 and out.startswith("PASS") and "deprecated" in err and "--model" in err
    code, _, err = run_cli(capsys, "selftest", models / "model.npz", "--model", models / "model.npz")
    assert code == 2 and "once" in err


def test_help_lists_choices_and_keeps_brackets(capsys):
    code, out, _ = run_cli(capsys, "listen", "--help")
    assert code == 0 and "edge[mic]" in " ".join(out.split())  # not eaten as rich markup (may wrap at "-")
    assert "ema|mean|none" in out and "auto|onnxruntime|litert|numpy" in out
    code, out, _ = run_cli(capsys, "data", "info", "--help")
    assert code == 0 and "ravdess|crema-d|tess|emodb|iemocap|folder|manifest" in out


def test_cli_choices_match_their_owners():
    from ser_edge.cli.conventions import BackendChoice, Corpus, ExportFormat
    from ser_edge.data import CORPORA
    from ser_edge.export import FORMATS
    from ser_edge.runtime.backends import BACKENDS

    assert [c.value for c in Corpus] == list(CORPORA)
    assert [b.value for b in BackendChoice] == ["auto", *BACKENDS]
    assert [f.value for f in ExportFormat] == list(FORMATS)


def test_predict_without_onnxruntime_runs_the_shipped_npz(tmp_path, wavs):
    """32-bit Pi OS: no onnxruntime wheel. With no --model, predict and selftest fall back to the
    shipped .npz (numpy backend); asking for onnxruntime says what to install."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_ONNXRUNTIME)
    env = {k: v for k, v in os.environ.items() if k != "SER_EDGE_MODEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "ser_edge", *map(str, args)], env=env, capture_output=True,
                              text=True, timeout=120)

    probe = subprocess.run([sys.executable, "-c", "import onnxruntime"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'onnxruntime'" in probe.stderr  # the device is simulated
    proc = cli("predict", wavs / "good.wav", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime is not installed" in proc.stderr and "ser-edge-ravdess.npz" in proc.stderr
    record = json.loads(proc.stdout)
    assert record["file"] == str(wavs / "good.wav") and abs(sum(record["probabilities"].values()) - 1) < 1e-4
    proc = cli("selftest", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["backend"] == "numpy"
    proc = cli("predict", wavs / "good.wav", "--backend", "onnxruntime")
    assert proc.returncode == 2 and "pip install onnxruntime" in proc.stderr and "Traceback" not in proc.stderr


def test_selftest_without_vector(capsys, models, tmp_path):
    with np.load(models / "model.npz") as z:
        arrays = {k: z[k] for k in z.files}
    props = json.loads(str(arrays["__metadata__"]))
    del props["ser_edge.selftest"]
    arrays["__metadata__"] = np.array(json.dumps(props))
    np.savez(tmp_path / "noself.npz", **arrays)
    code, _, err = run_cli(capsys, "selftest", tmp_path / "noself.npz")
    assert code == 2 and "no self-test" in err


def test_listen_wav(capsys, models, wavs):
    code, out, err = run_cli(capsys, "listen", "--model", models / "model.npz", "--wav", wavs / "good.wav",
                             "--window", "1", "--hop", "0.25", "--json")
    assert code == 0, err
    hops = [json.loads(line) for line in out.strip().splitlines()]
    # 1.5 s: hops end at 1.0, 1.25, 1.5 s; no tail left for flush
    assert [h["end_s"] for h in hops] == [1.0, 1.25, 1.5]
    code, out, _ = run_cli(capsys, "listen", "--model", models / "model.npz", "--wav", wavs / "good.wav")
    assert code == 0 and len(out.strip().splitlines()) == 1  # 1.5 s < 2 s window: one flush prediction


def test_listen_needs_one_source(capsys, models, wavs):
    code, _, err = run_cli(capsys, "listen", "--model", models / "model.npz")
    assert code == 2 and "--wav" in err
    code, _, err = run_cli(capsys, "listen", "--model", models / "model.npz", "--wav", wavs / "good.wav",
                           "--hop", "5")
    assert code == 2 and "hop" in err


def test_listen_mic_without_sounddevice(capsys, models, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sounddevice", None)
    code, _, err = run_cli(capsys, "listen", "--model", models / "model.npz", "--mic")
    assert code == 2 and "pip install 'ser-edge[mic]'" in err


@pytest.mark.slow
def test_bench_json(capsys, models, wavs, tmp_path):
    out_json = tmp_path / "bench" / "report.json"
    code, out, err = run_cli(capsys, "bench", "--model", models / "model.int8.onnx", "--wav", wavs / "good.wav",
                             "--threads", "1,2", "--repeats", "3", "--json-out", out_json)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert [t["threads"] for t in report["threads"]] == [1, 2]
    assert report["audio_s"] == pytest.approx(1.5)
    assert report["features_median_ms"] > 0 and all(t["model_median_ms"] > 0 for t in report["threads"])
    for t in report["threads"]:
        assert t["rtf"] == pytest.approx((report["features_median_ms"] + t["model_median_ms"]) / 1e3 / 1.5)
    cold = report["cold_start"]
    assert cold["wall_ms"] >= cold["first_predict_ms"] > 0
    assert cold["heavy_modules_loaded"] == []  # a fresh process runs on numpy + onnxruntime only
    assert "real-time factor" in out and "cold start" in out
    assert list(out_json.parent.iterdir()) == [out_json]  # atomic write leaves no temp file


def test_bench_json_switch_prints_the_report(capsys, models, wavs):
    code, out, err = run_cli(capsys, "bench", "-m", models / "model.npz", "--wav", wavs / "good.wav", "--repeats", "1",
                             "--no-cold-start", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["backend"] == "numpy" and report["cold_start"] is None and report["audio_s"] == pytest.approx(1.5)


def test_bench_rejects_bad_threads(capsys, models):
    code, _, err = run_cli(capsys, "bench", "--model", models / "model.npz", "--threads", "1,x")
    assert code == 2 and "--threads" in err
