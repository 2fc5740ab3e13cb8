#!/usr/bin/env bash
# Build (once) or reuse an aarch64 Raspberry Pi OS 64-bit-like userland for scripts/arm/test_arm.sh:
# Debian bookworm arm64 minbase + python3 (CPython 3.11) + the pinned aarch64 wheels of
# requirements-arm.txt in /opt/site. Runs under qemu-user-static on an x86_64 host.
#
#   bash scripts/arm/setup_rootfs.sh      # as root; prints ARM_ROOTFS=... ARM_CPUINFO=... ARM_QEMU=...
#
# Cache: ${SER_EDGE_ARM_CACHE:-$HOME/.cache/ser-edge-arm}/rootfs-<key>, where <key> hashes the
# build functions below, requirements-arm.txt, the suite and the mirror: changing a pin
# rebuilds. Other rootfs-* trees (stale keys) are deleted after a successful build.
# ~470 MB rootfs + ~55 MB of wheels.
# Env: SER_EDGE_ARM_CACHE, DEBIAN_MIRROR (default http://deb.debian.org/debian),
#      SER_EDGE_ARM_PY (x86 python whose pip downloads the wheels; default .venv/bin/python),
#      NO_BINFMT=1 (exercise the fallback that starts qemu explicitly).
# Logs go to stderr; stdout carries only the shell-quoted variables for `eval`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${SER_EDGE_ARM_CACHE:-$HOME/.cache/ser-edge-arm}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
REQS=$HERE/requirements-arm.txt
PY=${SER_EDGE_ARM_PY:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=python3

log() { echo "[arm-setup] $*" >&2; }
die() { echo "[arm-setup] error: $*" >&2; exit 1; }

# ---- preconditions -----------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount namespaces, binfmt_misc). Run: sudo make test-arm"
[ "$(uname -m)" = x86_64 ] || die "expects an x86_64 host emulating aarch64 with qemu-user (this host: $(uname -m))"

# ---- host tools --------------------------------------------------------------------------
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]} with apt-get"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# ---- binfmt_misc: lets the kernel run aarch64 ELF files through qemu transparently --------
binfmt_ok() {
    [ "${NO_BINFMT:-0}" != 1 ] || return 1
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || return 1
    # update-binfmts registers qemu-user-static's entry (flags F: the interpreter is opened
    # now, so it need not exist inside the chroot); the service start is often refused by policy.
    grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 || update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64
}
QEMU_IN_ROOT=
if binfmt_ok; then
    log "binfmt_misc: qemu-aarch64 registered"
else
    QEMU_IN_ROOT=/usr/bin/qemu-aarch64-static
    log "binfmt_misc unusable: qemu is started explicitly (aarch64 subprocesses cannot be exec'd)"
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9   # one build at a time per cache

in_root() {  # in_root DIR CMD ARGS... : run an aarch64 binary chrooted in DIR (no /proc etc.)
    local r=$1; shift
    if [ -n "$QEMU_IN_ROOT" ]; then chroot "$r" "$QEMU_IN_ROOT" "$@"; else chroot "$r" "$@"; fi
}

plat_args() {  # pip flags selecting CPython 3.11 aarch64 wheels for glibc <= 2.36 (bookworm)
    local a=(--only-binary=:all: --python-version 3.11 --implementation cp --platform manylinux2014_aarch64)
    for i in $(seq 17 36); do a+=(--platform "manylinux_2_${i}_aarch64"); done
    printf '%s\n' "${a[@]}"
}

build_rootfs() {  # build_rootfs DIR
    local dir=$1 t0
    t0=$(date +%s)
    log "debootstrap stage 1 ($SUITE arm64 minbase + python3) into $dir"
    # Stage 1 runs natively and downloads every .deb. Instead of the emulated --second-stage
    # (~2.5 min) we only unpack them: a runnable userland is needed, not a configured dpkg db.
    debootstrap --arch=arm64 --foreign --variant=minbase --include=python3 "$SUITE" "$dir" "$MIRROR" >&2
    for f in "$dir"/var/cache/apt/archives/*.deb; do dpkg -x "$f" "$dir"; done
    rm -f "$dir"/var/cache/apt/archives/*.deb
    [ -z "$QEMU_IN_ROOT" ] || cp /usr/bin/qemu-aarch64-static "$dir$QEMU_IN_ROOT"
    in_root "$dir" /sbin/ldconfig
    log "rootfs unpacked in $(( $(date +%s) - t0 )) s"

    t0=$(date +%s)
    mapfile -t plat < <(plat_args)
    log "aarch64 wheels (pinned in $(basename "$REQS")) -> $CACHE/wheels"
    "$PY" -m pip download -q "${plat[@]}" -d "$CACHE/wheels" -r "$REQS" >&2
    "$PY" -m pip install -q "${plat[@]}" --no-index --find-links "$CACHE/wheels" \
        --target "$dir/opt/site" -r "$REQS" >&2
    # Byte-compile the stdlib on the host (same CPython minor => same .pyc format): the emulated
    # interpreter would otherwise spend tens of seconds compiling on every fresh rootfs.
    "$PY" -m compileall -q -j 0 "$dir/usr/lib/python3.11" >/dev/null 2>&1 || true
    log "wheels installed in $(( $(date +%s) - t0 )) s"

    in_root "$dir" /usr/bin/python3 -c \
        "import platform, sys; assert platform.machine() == 'aarch64', platform.machine(); print('rootfs python', sys.version.split()[0], platform.machine())" >&2
}

# The key covers what the tree is built from: the build code itself, the pins, suite and mirror.
KEY=$( { declare -f build_rootfs plat_args in_root; cat "$REQS"; echo "$SUITE $MIRROR"; } | sha256sum | cut -c1-12)
ROOT=$CACHE/rootfs-$KEY
if [ -e "$ROOT/.complete" ]; then
    log "reusing $ROOT"
else
    tmp=$CACHE/build-$KEY
    rm -rf "$tmp"
    build_rootfs "$tmp"
    touch "$tmp/.complete"
    mv "$tmp" "$ROOT"
    # Stale rootfs trees from older keys. Mounts only ever live in arm_run.sh's private
    # namespaces, but refuse to delete anything that has a mount under it anyway.
    for old in "$CACHE"/rootfs-* "$CACHE"/build-*; do
        [ -d "$old" ] && [ "$old" != "$ROOT" ] || continue
        if findmnt -rn -o TARGET | grep -q "^$old"; then log "not removing $old: something is mounted in it"
        else log "removing stale $old"; rm -rf "$old"; fi
    done
fi
if [ -n "$QEMU_IN_ROOT" ] && [ ! -x "$ROOT$QEMU_IN_ROOT" ]; then
    cp /usr/bin/qemu-aarch64-static "$ROOT$QEMU_IN_ROOT"
fi

# A Pi-4 /proc/cpuinfo with as many cores as the host exposes in /sys (cpuinfo_pi4 has 4).
bash "$HERE/make_cpuinfo.sh" "$(nproc --all)" "$HERE/cpuinfo_pi4" > "$CACHE/cpuinfo"

printf 'ARM_ROOTFS=%q\nARM_CPUINFO=%q\nARM_QEMU=%q\n' "$ROOT" "$CACHE/cpuinfo" "$QEMU_IN_ROOT"
