#!/usr/bin/env bash
# `make test-arm`: prove the ser-edge runtime (numpy + onnxruntime + ai-edge-litert, no torch)
# works on aarch64 - a Raspberry Pi OS 64-bit (Debian bookworm, CPython 3.11) userland run under
# qemu-user emulating a Pi 4's Cortex-A72 - and gives the same numbers as on x86.
#
#   sudo make test-arm                 # or: sudo bash scripts/arm/test_arm.sh [pytest args...]
#
# 1. setup_rootfs.sh builds or reuses the cached rootfs + pinned aarch64 wheels (cold ~1 min).
# 2. Copies this checkout's runtime/ (as ser_edge/runtime, the package's own layout) and
#    tests/arm/ into the rootfs - a fresh copy every run, no wheel build needed (pure Python).
# 3. make_reference.py (x86, the project .venv): fits + exports a tiny model, writes WAVs and the
#    x86 runtime's MFCC/logits for every exported file x backend.
# 4. pytest tests/arm inside the rootfs through arm_run.sh.
# Env: SER_EDGE_ARM_CACHE (default ~/.cache/ser-edge-arm), SER_EDGE_ARM_PY (x86 python, default
#      .venv/bin/python), SER_EDGE_SHARED_DATA (real clips; synthetic ones without), QEMU_CPU
#      (default cortex-a72 = Pi 4; cortex-a53 = Pi 3/Zero 2 W, cortex-a76 = Pi 5), NO_BINFMT=1,
#      SER_EDGE_ARM_FORMATS (e.g. "onnx numpy"; default adds tflite when TensorFlow is installed).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${SER_EDGE_ARM_CACHE:-$HOME/.cache/ser-edge-arm}
PY=${SER_EDGE_ARM_PY:-$REPO/.venv/bin/python}
export SER_EDGE_ARM_CACHE=$CACHE SER_EDGE_ARM_PY=$PY

if [ "$(id -u)" != 0 ]; then
    echo "test-arm: needs root (debootstrap, chroot, mount namespaces, binfmt_misc)." >&2
    echo "          Run: sudo make test-arm   (see docs/arm.md)" >&2
    exit 1
fi
[ -x "$PY" ] || { echo "test-arm: no x86 python at $PY (run make venv first)" >&2; exit 1; }

T0=$(date +%s.%N)
elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
step() {  # step NAME cmd... : run cmd in a subshell with errexit, print its wall time, return its status
    local name=$1 s rc
    shift
    s=$(date +%s.%N)
    set +e
    (set -e; "$@")
    rc=$?
    set -e
    echo "[test-arm] $name: $(elapsed "$s") s"
    return $rc
}

mkdir -p "$CACHE"
exec 8>"$CACHE/.run.lock"
flock 8   # runs share the rootfs's /srv: one at a time

S=$(date +%s.%N)
ARM_ENV=$(bash "$HERE/setup_rootfs.sh")   # ARM_ROOTFS, ARM_CPUINFO, ARM_QEMU
eval "$ARM_ENV"
export ARM_QEMU
echo "[test-arm] rootfs: $(elapsed "$S") s"
W=/srv/ser-edge-arm           # inside the rootfs
HOST_W=$ARM_ROOTFS$W

stage() {  # fresh copy of the code under test; pycache from other interpreters left behind
    rm -rf "$HOST_W"
    mkdir -p "$HOST_W/src/ser_edge" "$HOST_W/tests" "$HOST_W/case"
    cp "$REPO/ser_edge/__init__.py" "$HOST_W/src/ser_edge/"
    cp -r "$REPO/runtime" "$HOST_W/src/ser_edge/runtime"
    cp "$REPO"/tests/arm/*.py "$HOST_W/tests/"
    find "$HOST_W" -name __pycache__ -prune -exec rm -rf {} +
}
step stage stage

step x86-reference env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2 \
    "$PY" "$HERE/make_reference.py" "$HOST_W/case" ${SER_EDGE_ARM_FORMATS:+--formats $SER_EDGE_ARM_FORMATS}

rc=0
step arm-pytest "$HERE/arm_run.sh" "$ARM_ROOTFS" "$ARM_CPUINFO" \
    PYTHONPATH="$W/src:/opt/site" SER_EDGE_ARM_DIR="$W/case" SER_EDGE_ARM_SRC="$W/src" \
    ARM_QEMU="$ARM_QEMU" OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
    python3 -m pytest -p no:cacheprovider -q -ra --rootdir "$W/tests" "$W/tests" "$@" || rc=$?

echo "[test-arm] total: $(elapsed "$T0") s (QEMU_CPU=${QEMU_CPU:-cortex-a72}, rootfs $ARM_ROOTFS)"
exit $rc
