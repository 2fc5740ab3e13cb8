"""The interpreter, the wheels' native code and the emulated CPU are what a Raspberry Pi 4 has."""

from __future__ import annotations

import glob
import os
import platform
import sys

import pytest

EM_AARCH64 = 183  # ELF e_machine of aarch64


def elf_machine(path: str) -> int:
    """``e_machine`` of an ELF file (little-endian header). Fails when ``path`` is not ELF."""
    with open(path, "rb") as f:
        hdr = f.read(20)
    assert hdr[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(hdr[18:20], "little")


def native_libs(package: str, pattern: str) -> list:
    """Shared objects matching ``pattern`` under an installed package's directory."""
    mod = __import__(package)
    root = os.path.dirname(mod.__file__)
    libs = glob.glob(os.path.join(root, "**", pattern), recursive=True)
    assert libs, f"no {pattern} under {root}"
    return libs


def test_interpreter_is_aarch64_cpython_311():
    assert platform.machine() == "aarch64"
    assert sys.implementation.name == "cpython"
    assert sys.version_info[:2] == (3, 11)  # bookworm = Raspberry Pi OS 64-bit
    assert elf_machine(os.path.realpath(sys.executable)) == EM_AARCH64


@pytest.mark.parametrize("package, pattern", [
    ("numpy", "_multiarray_umath*.so"),
    ("onnxruntime", "onnxruntime_pybind11_state*.so"),
    ("ai_edge_litert", "*.so"),
])
def test_native_extensions_are_aarch64(package, pattern):
    for lib in native_libs(package, pattern):
        assert elf_machine(lib) == EM_AARCH64, lib


def test_emulated_cpu_is_a_pi4_cortex_a72():
    """QEMU_CPU=cortex-a72: ARMv8.0 NEON only. qemu's default 'max' CPU would advertise SVE and
    dot-product instructions no Pi has, hiding code that dies with SIGILL on the real board."""
    from numpy._core._multiarray_umath import __cpu_features__ as feats

    assert feats["ASIMD"]
    for extension in ("ASIMDDP", "ASIMDHP", "ASIMDFHM", "SVE"):
        assert not feats.get(extension, False), f"{extension} visible: not a Cortex-A72"


def test_installed_versions_are_the_pinned_ones(reference):
    """Same numpy/onnxruntime/litert as the x86 reference side, so a diff means the platform."""
    from importlib.metadata import version

    host = reference["host"]
    for dist, key in (("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("ai-edge-litert", "ai_edge_litert")):
        if host[key] is not None:  # None: not installed on the x86 side
            assert version(dist) == host[key], dist
