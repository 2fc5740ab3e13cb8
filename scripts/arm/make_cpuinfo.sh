#!/usr/bin/env bash
# Print a /proc/cpuinfo for N cores built from a Raspberry Pi one (default: cpuinfo_pi4 here).
#
#   make_cpuinfo.sh N [TEMPLATE] > cpuinfo
#
# The template's first "processor" block is repeated N times (renumbered), followed by its
# board trailer (Hardware/Revision/Model). setup_rootfs.sh uses the host's core count so that
# /proc/cpuinfo agrees with /sys/devices/system/cpu, which pytorch-cpuinfo (inside onnxruntime
# and ai-edge-litert) reads as well.
set -euo pipefail
n=${1:?usage: make_cpuinfo.sh N [TEMPLATE]}
template=${2:-$(dirname "${BASH_SOURCE[0]}")/cpuinfo_pi4}
[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "make_cpuinfo.sh: N must be a positive integer, got '$n'" >&2; exit 2; }
awk -v n="$n" '
    BEGIN { RS = "" }
    /^processor/ { if (tpl == "") tpl = $0; next }
    { trailer = $0 }
    END {
        if (tpl == "") { print "make_cpuinfo.sh: no processor block in template" > "/dev/stderr"; exit 1 }
        for (i = 0; i < n; i++) {
            b = tpl
            sub(/^processor[ \t]*:[ \t]*[0-9]+/, "processor\t: " i, b)
            printf "%s\n\n", b
        }
        if (trailer != "") printf "%s\n", trailer
    }' "$template"
