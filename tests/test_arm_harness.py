"""Cheap checks of the ``make test-arm`` harness (scripts/arm/) in the ordinary x86 suite.

Nothing here emulates aarch64 or needs root: the emulated run itself is ``sudo make test-arm``
(docs/arm.md). These catch a broken script, a cpuinfo that no longer looks like a Pi 4, or pins
drifting away from the x86 side the reference is computed with.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARM = REPO / "scripts" / "arm"
SCRIPTS = sorted(ARM.glob("*.sh"))


def parse_cpuinfo(text: str):
    """``-> (list of per-processor dicts, board trailer dict)`` from /proc/cpuinfo text."""
    procs, board = [], {}
    for block in (b for b in text.strip().split("\n\n") if b.strip()):
        fields = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        (procs.append(fields) if "processor" in fields else board.update(fields))
    return procs, board


def assert_pi4(text: str, n_cores: int) -> None:
    procs, board = parse_cpuinfo(text)
    assert [int(p["processor"]) for p in procs] == list(range(n_cores))
    for p in procs:
        assert p["CPU implementer"] == "0x41"  # Arm Ltd.
        assert p["CPU part"] == "0xd08"  # Cortex-A72, the Pi 4's core
        assert p["CPU architecture"] == "8"
        feats = set(p["Features"].split())
        assert {"fp", "asimd"} <= feats
        assert not feats & {"asimddp", "asimdhp", "sve", "atomics"}, "ARMv8.0 core only"
    assert board["Hardware"] == "BCM2835"
    assert board["Model"].startswith("Raspberry Pi 4")


def test_harness_files_present():
    names = {p.name for p in ARM.iterdir()}
    assert {"test_arm.sh", "setup_rootfs.sh", "arm_run.sh", "make_cpuinfo.sh", "cpuinfo_pi4",
            "make_reference.py", "requirements-arm.txt"} <= names
    assert sorted(p.name for p in (REPO / "tests" / "arm").glob("test_*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_scripts_are_executable_bash_with_valid_syntax(script):
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_cpuinfo_template_is_a_pi4():
    assert_pi4((ARM / "cpuinfo_pi4").read_text(), n_cores=4)


@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_make_cpuinfo_renumbers_cores(n):
    out = subprocess.run(["bash", str(ARM / "make_cpuinfo.sh"), str(n)], check=True,
                         capture_output=True, text=True).stdout
    assert_pi4(out, n_cores=n)


def test_make_cpuinfo_rejects_bad_count():
    r = subprocess.run(["bash", str(ARM / "make_cpuinfo.sh"), "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "positive integer" in r.stderr


def test_arm_run_usage_error_without_arguments():
    r = subprocess.run(["bash", str(ARM / "arm_run.sh")], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


def test_arm_run_pins_the_pi4_cpu_and_a_clean_environment():
    text = (ARM / "arm_run.sh").read_text()
    assert "QEMU_CPU=${QEMU_CPU:-cortex-a72}" in text  # not qemu's default 'max' (SVE, dotprod)
    assert "env -i" in text and "unshare --mount" in text
    assert re.search(r'mount --bind "\$CPUINFO" "\$R/proc/cpuinfo"', text)


def test_requirements_are_fully_pinned():
    lines = [ln.strip() for ln in (ARM / "requirements-arm.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln and not ln.startswith("#")]
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.]*", r) for r in reqs), reqs
    names = {r.split("==")[0].lower().replace("_", "-") for r in reqs}
    assert {"numpy", "onnxruntime", "ai-edge-litert", "pytest"} <= names
    # the runtime's forbidden dependencies must never be installed on the emulated device
    assert not names & {"torch", "librosa", "onnx", "scipy", "tensorflow"}


@pytest.mark.parametrize("dist", ["numpy", "onnxruntime", "ai-edge-litert"])
def test_arm_pins_match_the_x86_reference_side(dist):
    """The reference is computed with this environment's versions; the emulated side must use the
    same ones so that a difference can only come from the platform."""
    pins = dict(ln.split("==") for ln in (ARM / "requirements-arm.txt").read_text().splitlines()
                if "==" in ln and not ln.startswith("#"))
    try:
        here = version(dist)
    except PackageNotFoundError:
        pytest.skip(f"{dist} not installed here")
    assert pins[dist] == here, f"requirements-arm.txt pins {dist}=={pins[dist]}, this environment has {here}"


def test_arm_tests_are_not_collected_on_x86(monkeypatch):
    """Without SER_EDGE_ARM_DIR (set only by test_arm.sh) tests/arm/conftest.py ignores its tests."""
    import importlib.util

    monkeypatch.delenv("SER_EDGE_ARM_DIR", raising=False)
    spec = importlib.util.spec_from_file_location("arm_conftest_probe", REPO / "tests" / "arm" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.collect_ignore_glob == ["test_*.py"]


def test_test_arm_refuses_to_run_without_root():
    setpriv = shutil.which("setpriv")
    if os.geteuid() == 0:
        if setpriv is None:
            pytest.skip("running as root and no setpriv to drop privileges")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(ARM / "test_arm.sh")]
    else:
        cmd = ["bash", str(ARM / "test_arm.sh")]
    env = dict(os.environ, SER_EDGE_ARM_CACHE="/nonexistent/ser-edge-arm-cache")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/")
    assert r.returncode == 1
    assert "needs root" in r.stderr and "sudo make test-arm" in r.stderr
