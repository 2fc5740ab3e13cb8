"""Tests that run INSIDE the emulated aarch64 rootfs (``make test-arm``, scripts/arm/test_arm.sh).

They compare the aarch64 runtime against reference outputs computed on x86 by
scripts/arm/make_reference.py, found in ``$SER_EDGE_ARM_DIR`` (``reference.json`` +
``reference.npz`` + the WAVs and exported models they name). Without that variable, i.e. in the
ordinary x86 ``pytest`` run, nothing here is collected.

The rootfs has numpy, onnxruntime, ai-edge-litert and pytest only: no torch, no librosa, no
onnx, no scipy, so importing anything that needs them fails loudly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ARM_DIR = os.environ.get("SER_EDGE_ARM_DIR")

if not ARM_DIR:
    # Ordinary x86 run: these files only make sense against a reference made by make_reference.py.
    collect_ignore_glob = ["test_*.py"]


def load_reference() -> dict:
    """``reference.json`` as written by make_reference.py (see there for the schema)."""
    with open(Path(ARM_DIR) / "reference.json", encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def arm_dir() -> Path:
    return Path(ARM_DIR)


@pytest.fixture(scope="session")
def reference() -> dict:
    return load_reference()


@pytest.fixture(scope="session")
def ref_arrays(arm_dir):
    """Arrays saved on x86: ``wave/<clip>``, ``audio16k/<clip>``, ``mfcc/<clip>``, ``logits/<case>``."""
    import numpy as np

    with np.load(arm_dir / "reference.npz") as z:
        return {k: z[k] for k in z.files}


def pytest_generate_tests(metafunc):
    """Parametrize ``case`` over the exported model files x backends listed in the reference."""
    if "case" in metafunc.fixturenames:
        cases = load_reference()["cases"]
        metafunc.parametrize("case", cases, ids=[c["id"] for c in cases], scope="module")
