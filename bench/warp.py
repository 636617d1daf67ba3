"""The two window warps (issue: detection at the GPU's speed): cv2 on a CPU core against torch
ops on the network's device, compared on the CPU, where both run.

1. Pixels: every window of the same boxes through both paths, at the toy network's 32 px and
   AlexNet's 227 px; mean and largest absolute difference per pixel value (0-255 levels).
2. Speed, one thread each, from the decoded image to the normalised float batch the network
   takes: windows/s of each path and the ratio.
3. With ``--work`` (a finished ``lsda run``): the six detectors score the evaluation split
   again with the torch warp, and the held-out / trained mAP of each row is printed beside
   the cv2 run's.

The images are ImageNet-sized (500 x 375, smooth random colour fields) with 2,000 boxes each
(selective search's cap on real images). Usage:
python bench/warp.py [--images 6] [--work WORK --data DATA]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.detect.warp_torch import warp_windows_torch  # noqa: E402
from pipeline.extract.warp import context_padding, warp_windows  # noqa: E402
from pipeline.workdir import WorkDir  # noqa: E402

MEAN = np.array([123.68, 116.78, 103.94], np.float32)


def scene(rng: np.random.Generator, h: int = 375, w: int = 500) -> np.ndarray:
    coarse = rng.integers(0, 256, (h // 12 + 2, w // 12 + 2, 3)).astype(np.float32)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def proposals(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    x1, y1 = rng.integers(0, w - 8, n), rng.integers(0, h - 8, n)
    x2 = np.minimum(x1 + rng.integers(8, w // 2, n), w - 1)
    y2 = np.minimum(y1 + rng.integers(8, h // 2, n), h - 1)
    return np.stack([x1, y1, x2, y2], 1).astype(np.float32)


def cv2_path(image: np.ndarray, boxes: np.ndarray, size: int) -> torch.Tensor:
    w = warp_windows(image, boxes, size, context_padding(size), MEAN)
    return torch.from_numpy(w).permute(0, 3, 1, 2).float()


def torch_path(image: np.ndarray, boxes: np.ndarray, size: int) -> torch.Tensor:
    pixels = torch.from_numpy(image).permute(2, 0, 1).float()
    fill = torch.from_numpy(np.round(MEAN))
    return warp_windows_torch(pixels, torch.from_numpy(boxes), size, context_padding(size), fill)


def compare(images: list[np.ndarray], boxes: list[np.ndarray], size: int, batch: int) -> dict:
    """Both paths over every image's boxes, ``batch`` windows at a time, as scoring cuts them."""
    seconds = {"cv2": 0.0, "torch": 0.0}
    diff_sum, diff_max, count = 0.0, 0.0, 0
    for image, b in zip(images, boxes, strict=True):
        for start in range(0, len(b), batch):
            part = b[start : start + batch]
            t0 = time.perf_counter()
            a = cv2_path(image, part, size)
            t1 = time.perf_counter()
            c = torch_path(image, part, size)
            t2 = time.perf_counter()
            seconds["cv2"] += t1 - t0
            seconds["torch"] += t2 - t1
            d = (a - c).abs()
            diff_sum, diff_max, count = (
                diff_sum + d.sum().item(),
                max(diff_max, d.max().item()),
                count + d.numel(),
            )
    n = sum(len(b) for b in boxes)
    return {
        "size": size,
        "windows": n,
        "mad": diff_sum / count,
        "max": diff_max,
        "cv2_wps": n / seconds["cv2"],
        "torch_wps": n / seconds["torch"],
    }


def map_both_ways(data: str, work: str) -> list[tuple[str, dict, dict]]:
    """(row, cv2 metrics, torch metrics) for the six detectors of the run in ``work``."""
    from pipeline.data.category_sets import held_back, set_b
    from pipeline.detect.stage import run_detect
    from pipeline.evaluate.stage import run_evaluate
    from pipeline.io.ray_env import start_local_ray
    from pipeline.workdir import ablation_models
    from schemas.config import CategorySplit, ScoringConfig

    start_local_ray(num_cpus=2, log_to_driver=False)
    report = json.loads(open(f"{work}/report/metrics.json").read())
    split = report["split"]
    rows = ablation_models(report["config"]["k"])
    models = {f"{row}-torchwarp": WorkDir(work).model(stem) for row, stem in rows.items()}
    run_detect(data, work, models, split=split, scoring=ScoringConfig(warp="torch"))
    sets = CategorySplit()
    b, held = set_b(data, sets), held_back(data, sets)
    out = []
    for row in rows:
        cv2_m = next(r for r in report["rows"] if r["name"] == row)
        torch_m = run_evaluate(data, work, f"{row}-torchwarp", split, set_b=b, held_back=held)
        out.append((row, cv2_m, torch_m))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--windows", type=int, default=2000)
    ap.add_argument("--work", help="a finished lsda run: compare the mAP of both warps")
    ap.add_argument("--data", help="its dataset root (with --work)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    images = [scene(rng) for _ in range(args.images)]
    boxes = [proposals(rng, args.windows, *im.shape[:2]) for im in images]
    print(f"{args.images} images of 500 x 375, {args.windows} boxes each, one thread per path")
    print("| size | windows | mean abs diff | max | cv2 windows/s | torch windows/s | cv2/torch |")
    print("|---|---|---|---|---|---|---|")
    for size, batch in ((32, 512), (227, 128)):
        r = compare(images, boxes, size, batch)
        print(
            f"| {size} | {r['windows']} | {r['mad']:.3f} | {r['max']:.0f} | {r['cv2_wps']:,.0f} "
            f"| {r['torch_wps']:,.0f} | {r['cv2_wps'] / r['torch_wps']:.2f}x |"
        )
    if args.work:
        print("\nmAP on the run's evaluation split, cv2 warp (the run's) vs torch warp:")
        print("| row | held-out cv2 | held-out torch | trained cv2 | trained torch |")
        print("|---|---|---|---|---|")
        for row, a, b in map_both_ways(args.data, args.work):
            print(
                f"| {row} | {100 * a['map_heldout']:.1f} | {100 * b['map_heldout']:.1f} "
                f"| {100 * a['map_trained']:.1f} | {100 * b['map_trained']:.1f} |"
            )


if __name__ == "__main__":
    main()
