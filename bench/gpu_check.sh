#!/usr/bin/env bash
# The GPU check (one call, <= 6 minutes): on a machine with one GPU, Python 3.12 and torch,
# after bench/gpu_bundle.sh made .gpu_bundle here:
#   train-cls --gpus, train-det --gpus (1 worker each) on the small built-in world, then
#   detect --gpus on it, then bench/gpu_detect.py (AlexNet 227, 2,000 windows per image, end to
#   end from JPEG bytes, beside the model-only ceiling: bf16, fp32, bf16 with the cv2 warp);
#   prints GPU utilisation and memory (nvidia-smi, sampled every second) and the stages'
#   throughput. Exit code: the first failing stage's.
# Device tool: run(command="bash bench/gpu_check.sh", carry=[".gpu_bundle"], timeout_s=420)
set -euo pipefail
cd "$(dirname "$0")/.."
B=.gpu_bundle
SITE=/tmp/lsda-site
T=${TMPDIR:-/tmp}/lsda-gpu
rm -rf "$SITE" "$T" && mkdir -p "$SITE" "$T"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
    "$B"/wheels/*.whl
tar -C "$SITE" -xJf "$B/ray-site.tar.xz"
tar -C "$T" -xJf "$B/world.tar.xz"
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1
DATA=$T/world/data WORK=$T/world/work
python3 -c 'import torch, ray; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", "ray", ray.__version__)'
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 \
    >"$T/smi.csv" 2>/dev/null &
SMI=$!
trap 'kill $SMI 2>/dev/null || true' EXIT
lsda() { python3 -m jobs.cli "$@"; }
stage() {  # name, then the command: its last lines, wall time and the GPU while it ran
    local name=$1 first t0 rc=0
    shift
    first=$(wc -l <"$T/smi.csv")
    t0=$SECONDS
    "$@" >"$T/$name.log" 2>&1 || rc=$?
    grep -v '^\s*$' "$T/$name.log" | tail -n 12 || true
    tail -n +"$((first + 1))" "$T/smi.csv" | awk -F', ' -v n="$name" -v s=$((SECONDS - t0)) '
        {u += $1; if ($1 > umax) umax = $1; if ($2 > m) m = $2; k++}
        END {printf "== %s: %d s, GPU utilisation mean %.0f%% max %d%%, memory max %d MiB\n",
             n, s, (k ? u / k : 0), umax, m}'
    [ "$rc" -eq 0 ] || { echo "== $name failed (exit $rc)"; exit "$rc"; }
}
COMMON=(--data "$DATA" --work "$WORK" --config configs/toyworld.yaml --workers 1 --gpus)
stage train-cls lsda train-cls "${COMMON[@]}" --epochs 8
stage train-det lsda train-det "${COMMON[@]}" --iterations 1000
stage detect lsda detect --data "$DATA" --work "$WORK" --model "$WORK/models/det-all-fcB.pt" \
    --split val2 --gpus --actors 1
python3 - "$WORK" "$T/detect.log" <<'PY'
import json, sys
import pyarrow.compute as pc
from pipeline.workdir import WorkDir
from pipeline.io import storage
work, log = sys.argv[1:]
windows = sum(pc.sum(pc.list_value_length(storage.read_table(u, ["boxes"])["boxes"])).as_py() // 4
              for u in WorkDir(work).extract_parts("val2", "proposals"))
summary = next(iter(json.loads([l for l in open(log) if l.startswith("{")][-1]).values()))
print(f"detect --gpus, small world end to end (Ray Data, actor start included): "
      f"{summary['images_per_s']} images/s, {windows / summary['seconds']:,.0f} windows/s")
PY
# AlexNet 227 at 2,000 windows per image, end to end from JPEG bytes, beside its ceiling
for args in "--precision bf16" "--precision fp32" "--precision bf16 --warp cv2"; do
    stage "gpu-detect $args" python3 bench/gpu_detect.py --device cuda $args
done
python3 - "$WORK" <<'PY'
import sys
import torch
from pipeline.model.checkpoints import load_payload
work = sys.argv[1]
for name in ("cls.pt", "det-all-fcB.pt"):
    p = load_payload(f"{work}/models/{name}")
    m = p.get("metrics", {})
    keys = ("holdout_accuracy", "images_per_s", "fg_bg_accuracy", "windows_per_s")
    print(name, {k: round(m[k], 3) for k in keys if k in m})
    # a checkpoint written on the GPU loads on the CPU and on the GPU
    for device in ("cpu", "cuda"):
        torch.load(f"{work}/models/{name}", map_location=device, weights_only=True)
print("checkpoints load on cpu and cuda")
PY
