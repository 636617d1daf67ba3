#!/usr/bin/env bash
# Prepare what bench/gpu_check.sh needs on a GPU test machine that has Python 3.12, torch and
# torchvision, but no Ray, no internet and room for 64 MiB beside the project:
#   .gpu_bundle/wheels/   Ray 2.60.0 (cp312, without ray/jars and the dashboard's web build) and
#                         the packages Ray's default/data/train extras need that such a machine
#                         lacks, from the package index;
#   .gpu_bundle/world.tar.xz  a small built-in world, already extracted here (the machine's
#                         OpenCV lacks the contrib module that selective search needs), with
#                         windows JPEG-encoded to stay small.
# Usage: bench/gpu_bundle.sh   (then bench/gpu_rehearse.sh here; then carry .gpu_bundle to the
#        machine and run bench/gpu_check.sh there)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.gpu_bundle
PY=${PY:-.venv/bin/python}
rm -rf "$OUT" && mkdir -p "$OUT/wheels" "$OUT/tmp"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
    manylinux2014_x86_64 manylinux1_x86_64 any; do platforms+=(--platform "$p"); done
download() {
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" -c constraints.txt -d "$1" "${@:2}"
}
download "$OUT/tmp" ray==2.60.0
# What ray[default,data,train] 2.60 needs beyond that image (its package list: device/KINDS.md),
# at the versions of constraints.txt. Not s3fs: the check reads local paths only.
download "$OUT/wheels" jsonschema referencing rpds-py jsonschema-specifications \
    pydantic pydantic-core annotated-types typing-inspection \
    opencensus opencensus-context google-api-core googleapis-common-protos proto-plus \
    google-auth cachetools pyasn1-modules pyasn1 rsa \
    opentelemetry-api opentelemetry-sdk opentelemetry-exporter-prometheus \
    opentelemetry-proto opentelemetry-semantic-conventions importlib-metadata \
    aiohttp-cors colorful smart-open tensorboardX
# ... and those the image has at versions nobody stated, which may be older than Ray 2.60 needs
# (protobuf for opencensus, typing-extensions for pydantic, aiohttp for the dashboard; six,
# which opencensus imports and the rehearsal found missing without): ours
# come first on the check's path, and the rehearsal (bench/gpu_image.txt) holds old ones.
download "$OUT/wheels" protobuf typing-extensions aiohttp aiohappyeyeballs aiosignal \
    frozenlist multidict propcache yarl attrs six
# Ray's wheel without its Java jars and the dashboard's web build (the dashboard still wants
# an empty build/static folder, or it refuses to start).
whl=$(ls "$OUT"/tmp/ray-2.60.0-*.whl)
mkdir "$OUT/tmp/ray" && (cd "$OUT/tmp/ray" && unzip -q "../$(basename "$whl")")
rm -rf "$OUT"/tmp/ray/ray/jars "$OUT"/tmp/ray/ray/dashboard/client/build
mkdir -p "$OUT"/tmp/ray/ray/dashboard/client/build/static
tar -C "$OUT/tmp/ray" -cJf "$OUT/ray-site.tar.xz" .
# A small world, extracted here (one local Ray instance per command: about a minute in all).
LSDA=$(dirname "$PY")/lsda
W=$OUT/tmp/world
"$LSDA" toyworld --out "$W/data" --size quick --seed 0 --no-progress >/dev/null
for split in cls det-train val1 val2; do
    "$LSDA" extract --data "$W/data" --work "$W/work" --split "$split" \
        --config configs/toyworld.yaml --window-encoding jpeg --no-progress | tail -n 1
done
rm -rf "$W/data/CLS" "$W/data/ILSVRC2013_DET_train"  # read only by extraction, done here
tar -C "$OUT/tmp" -cJf "$OUT/world.tar.xz" world
rm -rf "$OUT/tmp"
du -sh "$OUT" "$OUT"/*
# A device call carries at most 64 MiB beside the project: leave room for the tree itself.
size=$(du -sm "$OUT" | cut -f1)
((size <= 60)) || { echo "gpu_bundle: $size MiB, more than the 60 MiB a device call can carry"; exit 1; }
