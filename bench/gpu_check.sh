#!/usr/bin/env bash
# The GPU check: one call on a lent GPU machine (Python 3.12 and torch there, no Ray, no
# internet) that cannot waste its minutes. After bench/gpu_bundle.sh made .gpu_bundle here:
#   device tool: run(command="bash bench/gpu_check.sh", carry=[".gpu_bundle"], timeout_s=500)
#   here, first: bash bench/gpu_rehearse.sh   (the same stages on the CPU, in a venv like the
#                                              device's; it must pass before any GPU call)
# Stages, each under its own timeout, all inside BUDGET seconds (470: the call's 500 less the
# machine's start): setup (the bundle unpacked), probe (versions, GPU, CPU, memory),
# gpu-detect (bench/gpu_detect.py: AlexNet 227, 2,000 windows/image, phases, a batch sweep; no
# Ray), gpu-train (bench/gpu_train.py: train-det's AlexNet-227 step fed by its real input path
# against a synthetic batch), ray (a local instance sees the GPU), train-cls, train-det,
# detect (the small built-in world, one worker, --max-failures 0), checkpoints (they load on
# the CPU and the GPU). A failed stage is recorded and the next one runs; the exit code is the
# first failure's.
# Under $OUT (at most 8 files): summary.txt (a line per stage), check.log (everything, also on
# the console), smi.csv (nvidia-smi every second), ray-logs.tgz (on a failure: every stage's
# Ray session, each log's last 200 KB), gpu-detect.txt, gpu-train.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
REHEARSE=0
[ "${1:-}" = "--rehearse" ] && REHEARSE=1
PY=${PY:-python3}
BUNDLE=${BUNDLE:-.gpu_bundle}
OUT=${OUT:-/tmp/lsda-gpu-out}
T=${LSDA_CHECK_TMP:-/tmp/lsda-gpu}  # short: Ray's socket paths live under it
BUDGET=${BUDGET:-470}
CAP_SCALE=${CAP_SCALE:-1}  # the stages' caps are a GPU's; the rehearsal gives the CPU 4x
mkdir -p "$OUT"
rm -rf "$T" && mkdir -p "$T/site"
exec > >(tee -a "$OUT/check.log") 2>&1
: >"$OUT/summary.txt"
START=$SECONDS FIRST_FAILURE=0
export PYTHONPATH="$T/site:$PWD" PYTHONUNBUFFERED=1 RAY_TMPDIR="$T/ray"
DATA=$T/world/data WORK=$T/world/work
if [ "$REHEARSE" = 1 ]; then
    GPUS=() DEVICE=cpu  # and little of each: the CPU is slow
    GPU_DETECT=(--images 2 --windows 100 --sweep 128) GPU_TRAIN=(--steps 2 --warmup 1 --windows 256)
else
    GPUS=(--gpus) DEVICE=cuda GPU_DETECT=() GPU_TRAIN=()
fi

stage() {  # name, time cap (s), then the command; records its line in summary.txt
    local name=$1 cap=$2 left rc=0 t0=$SECONDS first=0
    shift 2
    cap=$((cap * CAP_SCALE))
    left=$((BUDGET - (SECONDS - START) - 5))
    ((cap > left)) && cap=$left
    if ((cap < 10)); then
        echo "$name: skipped, the budget of ${BUDGET} s is spent" | tee -a "$OUT/summary.txt"
        ((FIRST_FAILURE)) || FIRST_FAILURE=124
        return
    fi
    [ -f "$OUT/smi.csv" ] && first=$(wc -l <"$OUT/smi.csv")
    echo "=== $name (at most $cap s)"
    timeout -k 10 "$cap" bash -c 'set -o pipefail; "$@"' "$name" "$@" || rc=$?  # may be a function
    local line="$name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc$([ $rc -eq 124 ] &&
        echo ", timed out after $cap s"))"), $((SECONDS - t0)) s"
    if [ -f "$OUT/smi.csv" ]; then
        line+=$(tail -n +"$((first + 1))" "$OUT/smi.csv" | awk -F', ' '
            {u += $1; if ($1 > umax) umax = $1; if ($2 > m) m = $2; k++}
            END {if (k) printf ", GPU busy mean %.0f%% max %d%%, memory max %d MiB", u/k, umax, m}')
    fi
    echo "$line" | tee -a "$OUT/summary.txt"
    if ((rc != 0)) && ((FIRST_FAILURE == 0)); then FIRST_FAILURE=$rc; fi
}

setup() {
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$T/site" "$BUNDLE"/wheels/*.whl &&
        tar -C "$T/site" -xJf "$BUNDLE/ray-site.tar.xz" &&
        tar -C "$T" -xJf "$BUNDLE/world.tar.xz"
}

probe() {
    "$PY" - <<'PY'
import importlib, os, platform
import torch
print("python", platform.python_version(), "| cpus", os.cpu_count())
print("torch", torch.__version__, "| cuda", torch.version.cuda, "| available",
      torch.cuda.is_available(), "| cudnn", torch.backends.cudnn.version(),
      "| nccl", torch.cuda.nccl.version() if torch.cuda.is_available() else None)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.0f} GiB", p.multi_processor_count, "SMs")
from importlib.metadata import version
for name, dist in [("torchvision", "torchvision"), ("numpy", "numpy"), ("pyarrow", "pyarrow"),
                   ("cv2", "opencv-python-headless"), ("google.protobuf", "protobuf"),
                   ("typing_extensions", "typing-extensions"), ("aiohttp", "aiohttp"),
                   ("pydantic", "pydantic"), ("six", "six"), ("fsspec", "fsspec"),
                   ("yaml", "pyyaml"), ("ray", "ray")]:
    try:
        where = os.path.dirname(importlib.import_module(name).__file__)
        try:
            v = version(dist)
        except Exception:  # a wheel unpacked without its metadata
            v = "?"
        print(f"{name} {v} ({where})")
    except Exception as exc:  # the probe reports; the stages that need it will fail
        print(f"{name}: {type(exc).__name__}: {exc}")
PY
    local rc=$?
    nvidia-smi -L 2>/dev/null || echo "nvidia-smi: none"
    free -g | head -2
    df -h /dev/shm "$T" | tail -n +2
    return $rc
}

ray_smoke() {
    "$PY" - "$REHEARSE" <<'PY'
import sys
import ray
from pipeline.io.ray_env import ensure_ray
ensure_ray()
resources = ray.cluster_resources()
print("ray", ray.__version__, {k: v for k, v in resources.items() if "node" not in k})
if sys.argv[1] == "0":
    assert resources.get("GPU", 0) >= 1, "Ray sees no GPU"

    @ray.remote(num_gpus=1)
    def where() -> str:
        import torch
        return torch.cuda.get_device_name(0)

    print("a task with num_gpus=1 ran on", ray.get(where.remote(), timeout=60))
ray.shutdown()
PY
}

lsda() { "$PY" -m jobs.cli "$@"; }

checkpoints() {
    "$PY" - "$WORK" "$DEVICE" <<'PY'
import sys
import torch
from pipeline.model.checkpoints import load_payload
work, device = sys.argv[1:]
for name in ("cls.pt", "det-all-fcB.pt"):
    m = load_payload(f"{work}/models/{name}").get("metrics", {})
    keys = ("holdout_accuracy", "images_per_s", "fg_bg_accuracy", "windows_per_s")
    print(name, {k: round(m[k], 3) for k in keys if k in m})
    for where in sorted({"cpu", device}):  # written on the GPU, loaded on either
        torch.load(f"{work}/models/{name}", map_location=where, weights_only=True)
print("checkpoints load on", sorted({"cpu", device}))
PY
}

if [ "$REHEARSE" = 0 ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 \
        >"$OUT/smi.csv" 2>/dev/null &
    SMI=$!
    trap 'kill $SMI 2>/dev/null || true' EXIT
fi
export -f setup probe ray_smoke lsda checkpoints
export PY BUNDLE T REHEARSE DATA WORK DEVICE OUT
COMMON=(--data "$DATA" --work "$WORK" --config configs/toyworld.yaml --workers 1
    --max-failures 0 "${GPUS[@]}")
stage setup 60 setup
stage probe 30 probe
gpu_detect() { "$PY" bench/gpu_detect.py --device "$DEVICE" "$@" | tee "$OUT/gpu-detect.txt"; }
gpu_train() { "$PY" bench/gpu_train.py --device "$DEVICE" "$@" | tee "$OUT/gpu-train.txt"; }
export -f gpu_detect gpu_train
stage gpu-detect 150 gpu_detect "${GPU_DETECT[@]}"
stage gpu-train 90 gpu_train "${GPU_TRAIN[@]}"
stage ray 60 ray_smoke
stage train-cls 90 lsda train-cls "${COMMON[@]}" --epochs 8
stage train-det 120 lsda train-det "${COMMON[@]}" --iterations 1000
stage detect 90 lsda detect --data "$DATA" --work "$WORK" --model det-all-fcB \
    --split val2 --actors 1 "${GPUS[@]}"
stage checkpoints 30 checkpoints
if ((FIRST_FAILURE)) && [ -d "$T/ray/ray" ]; then  # every stage's Ray session, last 200 KB
    (cd "$T/ray/ray" && find session_2*/logs -type f -size +0 2>/dev/null | while read -r f; do
        mkdir -p "$T/logs/$(dirname "$f")" && tail -c 200000 "$f" >"$T/logs/$f"
    done)
    tar -C "$T" -czf "$OUT/ray-logs.tgz" logs && ls -l "$OUT/ray-logs.tgz"
fi
echo "=== summary ($((SECONDS - START)) s)"
cat "$OUT/summary.txt"
exit "$FIRST_FAILURE"
