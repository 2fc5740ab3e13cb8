"""The device path never loads the training stack: ``import ser_edge.runtime``, a prediction
with each backend, and the CLI's ``--help`` run in fresh interpreters and must not import torch,
librosa, onnx, scipy, sklearn or tensorflow."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "librosa", "onnx", "scipy", "sklearn", "tensorflow")

# Prints the heavy top-level packages present in sys.modules at exit, as JSON.
REPORT = f"import sys, json; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"


def heavy_modules_after(code: str) -> list:
    proc = subprocess.run([sys.executable, "-c", code + "\n" + REPORT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def models(exported_models):
    return exported_models("attn_bilstm")


def test_import_runtime_is_light():
    assert heavy_modules_after("import ser_edge, ser_edge.runtime") == []


def test_predict_stream_selftest_are_light(models):
    code = f"""
from ser_edge.runtime import Recognizer
from ser_edge.runtime.signals import speechlike
from ser_edge.runtime.selftest import run_selftest
y = speechlike(2.5, taper=False)
for name in ("model.onnx", "model.int8.onnx", "model.npz"):
    rec = Recognizer.load({str(models)!r} + "/" + name)
    assert rec.predict(y).label in rec.labels
    assert len(rec.stream(window_s=1.0, hop_s=0.5).push(y)) == 4
    assert run_selftest(rec).passed
"""
    assert heavy_modules_after(code) == []


def test_cli_help_is_light():
    code = """
from ser_edge.cli.main import main
for argv in (["--help"], ["predict", "--help"], ["listen", "--help"], ["bench", "--help"], ["selftest", "--help"]):
    try:
        main(argv)
    except SystemExit as e:
        assert e.code in (0, None), (argv, e.code)
"""
    assert heavy_modules_after(code) == []


def test_python_dash_m_help_is_light():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ser_edge", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "ser_edge" in imported  # the import trace is there, so an absence means something
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))
