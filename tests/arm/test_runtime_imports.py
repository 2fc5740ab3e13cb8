"""``ser_edge.runtime`` is numpy + stdlib only: torch/librosa/onnx/scipy are not even installed in
the rootfs, and the engines are imported lazily, only by the backend that needs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

FORBIDDEN = ("torch", "librosa", "onnx", "scipy", "tensorflow")
LAZY = ("onnxruntime", "ai_edge_litert", "tflite_runtime", "sounddevice")
MODULES = (
    "ser_edge.runtime",
    "ser_edge.runtime.audio",
    "ser_edge.runtime.features",
    "ser_edge.runtime.metadata",
    "ser_edge.runtime.recognizer",
    "ser_edge.runtime.selftest",
    "ser_edge.runtime.stream",
    "ser_edge.runtime.backends",
    "ser_edge.runtime.backends.onnxruntime_backend",
    "ser_edge.runtime.backends.numpy_archs",  # before numpy_lstm: it imports numpy_lstm, which imports it back
    "ser_edge.runtime.backends.numpy_lstm",
    "ser_edge.runtime.backends.litert",
)


def fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (same env) and return its stdout. Without binfmt_misc
    (``ARM_QEMU`` set by arm_run.sh) aarch64 binaries must be started through qemu explicitly."""
    qemu = os.environ.get("ARM_QEMU")
    cmd = ([qemu] if qemu else []) + [sys.executable, "-c", code]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def test_forbidden_packages_are_absent_from_the_rootfs():
    import importlib.util

    for name in FORBIDDEN:
        assert importlib.util.find_spec(name) is None, f"{name} is installed in the aarch64 rootfs"


def test_runtime_imports_without_heavy_or_eager_dependencies():
    code = (
        "import importlib, json, sys\n"
        f"for m in {MODULES!r}: importlib.import_module(m)\n"
        "print(json.dumps({'loaded': sorted(sys.modules),"
        " 'files': [sys.modules[m].__file__ for m in " + repr(MODULES) + "]}))\n"
    )
    out = json.loads(fresh_python(code))
    roots = {m.split(".")[0] for m in out["loaded"]}
    assert not roots & set(FORBIDDEN)
    assert not roots & set(LAZY), "an engine is imported at module level"
    assert "numpy" in roots
    # the copy under test, not something else on sys.path
    assert all(f.startswith(os.environ["SER_EDGE_ARM_SRC"]) for f in out["files"]), out["files"]
