"""Scoring at the GPU's speed (issue: detection at the GPU's speed): AlexNet at 227 px, 2,000
windows per image, end to end from JPEG bytes, beside the model-only ceiling of the same call.

1. Ceiling: the network alone (trunk to fc7, one output layer) on a batch already on the
   device, in the chosen precision: windows/s.
2. End to end, one process as one ``lsda detect`` actor runs it: JPEG bytes -> decode on the
   CPU -> the image to the device -> every window cut out there (or with cv2) -> the network
   -> background subtraction, per-class NMS, top-N on the device -> detections on the host.
   Images/s and windows/s, and their share of the ceiling.

Random weights (speed does not depend on them), 200 categories (ILSVRC DET), images of 500 x 375
with random boxes. The GPU check runs it; on a CPU it runs too, slowly (use few images):
python bench/gpu_detect.py [--device cuda] [--precision bf16] [--warp auto] [--images 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.warp import proposals, scene  # noqa: E402
from pipeline.detect.scoring import MultiDetector, WindowFeeder  # noqa: E402
from pipeline.io.images import decode_rgb  # noqa: E402
from pipeline.model.checkpoints import save_model  # noqa: E402
from pipeline.model.nets import CategoryMap, get_model  # noqa: E402
from schemas.config import (
    PostConfig,  # noqa: E402
    ScoringConfig,  # noqa: E402
)

MEAN = (123.68, 116.78, 103.94)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def ceiling(det: MultiDetector, batch: int, repeats: int) -> float:
    """Windows/s of the network alone on inputs already on the device."""
    x = torch.randn(batch, 3, det.input_size, det.input_size, device=det.device)
    if det.feeder.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    (trunk,) = det.trunks.values()
    (_, head), *_ = det.heads.values()

    def run() -> None:
        with torch.no_grad(), det.feeder.autocast():
            head(trunk.fc7_features(x)).float()

    run()  # cuDNN's autotuning and allocations
    sync(det.device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        run()
    sync(det.device)
    return batch * repeats / (time.perf_counter() - t0)


def end_to_end(det: MultiDetector, jpegs: list[bytes], boxes: list[np.ndarray]) -> float:
    """Seconds for every image: decode, warp, network, post-processing, results on the host."""
    t0 = time.perf_counter()
    for data, b in zip(jpegs, boxes, strict=True):
        image, _ = decode_rgb(data, 64_000_000, 1, MEAN)
        det.score(image, b)
    sync(det.device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--warp", default="auto", choices=["auto", "cv2", "torch"])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--windows", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=0, help="windows per forward pass (0: default)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as a scoring actor runs
    cv2.setNumThreads(1)
    scoring = ScoringConfig(
        gpus=args.device == "cuda",
        precision=args.precision,
        warp=args.warp,
        windows_per_batch=args.batch,
    )
    categories = CategoryMap(tuple(f"n{i:08d}" for i in range(200)))
    rng = np.random.default_rng(0)
    images = [scene(rng) for _ in range(args.images)]
    jpegs = [
        cv2.imencode(".jpg", im[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        for im in images
    ]
    boxes = [proposals(rng, args.windows, *im.shape[:2]) for im in images]
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        url = f"{tmp}/alexnet.pt"
        model = get_model("alexnet", categories.num_categories)
        save_model(url, model, "alexnet", categories, input_size=227, pixel_mean=list(MEAN))
        det = MultiDetector({"alexnet": url}, PostConfig(), scoring=scoring)
    feeder: WindowFeeder = det.feeder
    name = torch.cuda.get_device_name(0) if det.device.type == "cuda" else "CPU, one thread"
    print(f"device {name}; {args.precision}, warp {feeder.warp}, {feeder.batch} windows/pass")
    peak = ceiling(det, feeder.batch, repeats=max(1, 8192 // feeder.batch))
    end_to_end(det, jpegs[:1], boxes[:1])  # warm-up: the first image pays cuDNN's tuning
    seconds = end_to_end(det, jpegs, boxes)
    wps = args.images * args.windows / seconds
    print(f"model only (fc7 + output layer), input on the device: {peak:,.0f} windows/s")
    print(
        f"end to end from JPEG bytes: {args.images / seconds:.2f} images/s, {wps:,.0f} windows/s "
        f"at {args.windows} windows/image ({100 * wps / peak:.0f}% of the model-only rate)"
    )


if __name__ == "__main__":
    main()
