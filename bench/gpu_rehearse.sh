#!/usr/bin/env bash
# The GPU check's CPU rehearsal: every stage of bench/gpu_check.sh without --gpus, in a clean
# Python 3.12 venv that holds only the device image's packages (bench/gpu_image.txt) plus the
# bundle, exactly as the device gets it. Run it, and see it pass, before any GPU call: it is
# what catches a path, a package or a flag that only the device would otherwise find.
# Usage: bash bench/gpu_rehearse.sh [--rebuild]   (--rebuild: the bundle made anew)
# Output: /tmp/lsda-rehearse-out/{summary.txt,check.log,...}; exit code: the check's.
set -euo pipefail
cd "$(dirname "$0")/.."
V=${REHEARSE_VENV:-/tmp/lsda-rehearse-venv}
if [ ! -x "$V/bin/python" ]; then
    py=$(for p in python3.12 /root/.pyenv/versions/3.12*/bin/python3.12; do
        "$p" -V >/dev/null 2>&1 && { command -v "$p" || echo "$p"; } && break
    done || true)
    [ -n "$py" ] || { echo "gpu_rehearse: no Python 3.12 here (the device's)"; exit 2; }
    "$py" -m venv "$V"
fi
"$V/bin/pip" install -q -r bench/gpu_image.txt
if [ "${1:-}" = "--rebuild" ] || [ ! -f .gpu_bundle/world.tar.xz ]; then bash bench/gpu_bundle.sh; fi
rm -rf /tmp/lsda-rehearse-out
PY=$V/bin/python OUT=/tmp/lsda-rehearse-out BUDGET=${BUDGET:-2400} CAP_SCALE=4 \
    LSDA_CHECK_TMP=/tmp/lsda-rh bash bench/gpu_check.sh --rehearse
