#!/usr/bin/env bash
# Run one command inside the emulated aarch64 rootfs, as a Raspberry Pi 4 would see it.
#
#   arm_run.sh ROOTFS CPUINFO [VAR=value ...] CMD [ARGS...]
#
# - private mount namespace (unshare): /proc, /sys, /dev and the fake cpuinfo are mounted only
#   for this command and vanish when it exits; nothing to clean up, nothing leaks to the host.
# - CPUINFO is bound over /proc/cpuinfo: with the host's x86 cpuinfo, pytorch-cpuinfo (inside
#   onnxruntime and ai-edge-litert) segfaults at import under emulation.
# - QEMU_CPU defaults to cortex-a72 (Pi 4). qemu's default 'max' CPU exposes SVE/dotprod/fp16
#   that no Pi has, so code that would die with SIGILL on a Pi would pass here.
# - env -i: only PATH/HOME/LANG/QEMU_CPU plus the VAR=value arguments reach the command.
# - ARM_QEMU (set by setup_rootfs.sh when binfmt_misc is unusable): path of qemu-aarch64-static
#   inside the rootfs, started explicitly (aarch64 child processes then cannot be exec'd).
# Needs root (unshare --mount, chroot).
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 ROOTFS CPUINFO [VAR=value ...] CMD [ARGS...]" >&2
    exit 2
fi
if [ -z "${ARM_RUN_INNER:-}" ]; then
    ARM_RUN_INNER=1 exec unshare --mount --propagation private "$0" "$@"
fi

R=$1 CPUINFO=$2
shift 2
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount --bind "$CPUINFO" "$R/proc/cpuinfo"

vars=(PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LANG=C.UTF-8
      "QEMU_CPU=${QEMU_CPU:-cortex-a72}")
while [[ $1 == *=* ]]; do vars+=("$1"); shift; done
cmd=$1
shift
if [ -n "${ARM_QEMU:-}" ]; then
    [[ $cmd == /* ]] || cmd=/usr/bin/$cmd
    exec env -i "${vars[@]}" chroot "$R" "$ARM_QEMU" "$cmd" "$@"
fi
exec env -i "${vars[@]}" chroot "$R" "$cmd" "$@"
