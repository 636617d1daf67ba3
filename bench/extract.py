"""Extraction benchmarks (issue: proposal and window extraction). Prints ratios from one run.

1. Ray extraction vs a plain serial loop calling OpenCV on the same images: images/s of each,
   speed-up and parallel efficiency (speed-up / cores).
2. Warping: windows/s of ours against the plain R-CNN procedure and per-window warpAffine,
   on the same 2,000 boxes of a 500x375 image, at 227 and 32 px; max grey-level difference.
3. Warping's share of extraction time per image.
4. Peak memory of the driver for N and 10 N images (streaming, not collecting).
5. Selective search recall at IoU >= 0.5 and proposals per image on the val split.

Usage: python bench/extract.py [--scenes 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.data.boxes import iou_matrix  # noqa: E402
from pipeline.data.det_reader import read_det_split  # noqa: E402
from pipeline.extract.proposals import selective_search  # noqa: E402
from pipeline.extract.stage import run_extract  # noqa: E402
from pipeline.extract.warp import context_padding, warp_geometry, warp_windows  # noqa: E402
from pipeline.io import storage  # noqa: E402
from pipeline.io.images import decode_rgb  # noqa: E402
from pipeline.io.ray_env import start_local_ray  # noqa: E402
from pipeline.toyworld.generate import generate  # noqa: E402
from schemas.config import load_config, toyworld_config  # noqa: E402

CFG = load_config("configs/toyworld.yaml").extract


def make_world(root: str, scenes: int) -> None:
    cfg = toyworld_config("test", val1_scenes=scenes // 2, val2_scenes=scenes - scenes // 2)
    generate(root, cfg, workers=os.cpu_count() or 1, progress=False)


def serial_loop(root: str) -> tuple[int, float, float]:
    """The obvious alternative: decode + selective search + warp, one image after another."""
    cv2.setNumThreads(1)
    anns = read_det_split(root, "val").annotations
    t0, warp_s = time.perf_counter(), 0.0
    for a in anns:
        image, _ = decode_rgb(storage.read_bytes(a.image_url), CFG.max_pixels, 1, CFG.pixel_mean)
        boxes = selective_search(image, CFG.resize_width, CFG.max_proposals, CFG.min_box)
        t1 = time.perf_counter()
        warp_windows(
            image,
            boxes[: CFG.bg_per_image + 20],
            CFG.window_size,
            context_padding(CFG.window_size),
            CFG.pixel_mean,
        )
        warp_s += time.perf_counter() - t1
    return len(anns), time.perf_counter() - t0, warp_s


def ray_extract(root: str, work: str, workers: int, warmup: str | None = None):
    """Images done, seconds, ray.init seconds, and the fixed cost of a first tiny run."""
    import ray

    t0 = time.perf_counter()
    start_local_ray(num_cpus=workers, log_to_driver=False)
    t_init = time.perf_counter() - t0
    fixed = 0.0
    if warmup:  # pays Ray Data's start and the workers' imports, as any first job does
        t1 = time.perf_counter()
        run_extract(warmup, f"{work}-warmup", "val1", CFG, workers=workers, progress=False)
        fixed = time.perf_counter() - t1
    t1 = time.perf_counter()
    s = run_extract(root, work, "val", CFG, windows=True, workers=workers, progress=False)
    elapsed = time.perf_counter() - t1
    ray.shutdown()
    return s["done"], elapsed, t_init, fixed


def plain_rcnn_warp(image, boxes, size, pad, mean):
    """R-CNN's procedure as usually written: a fresh mean canvas per window, then stack."""
    h, w = image.shape[:2]
    out = []
    for box in boxes:
        (sx1, sy1, sx2, sy2), (dx, dy, dw, dh) = warp_geometry(box, w, h, size, pad)
        canvas = np.empty((size, size, 3), np.uint8)
        canvas[:] = np.round(mean).astype(np.uint8)
        crop = image[sy1 : sy2 + 1, sx1 : sx2 + 1].copy()
        canvas[dy : dy + dh, dx : dx + dw] = cv2.resize(crop, (dw, dh))
        out.append(canvas)
    return np.stack(out)


def affine_warp(image, boxes, size, pad, mean):
    """Per-window cv2.warpAffine of the dilated box from the whole image, mean border."""
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    border = tuple(float(m) for m in np.round(mean))
    scale = size / (size - 2 * pad)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        cx, cy = (x1 + x2 + 1) / 2, (y1 + y2 + 1) / 2
        hw, hh = (x2 - x1 + 1) / 2 * scale, (y2 - y1 + 1) / 2 * scale
        sx, sy = size / (2 * hw), size / (2 * hh)
        m = np.array(
            [[sx, 0, -(cx - hw) * sx - 0.5 + 0.5 * sx], [0, sy, -(cy - hh) * sy - 0.5 + 0.5 * sy]]
        )
        out[i] = cv2.warpAffine(
            image,
            m,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=border,
        )
    return out


def warp_bench() -> list[dict]:
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur((rng.random((375, 500, 3)) * 255).astype(np.uint8), (0, 0), 2)
    x1, y1 = rng.uniform(0, 450, 2000), rng.uniform(0, 330, 2000)
    boxes = np.stack(
        [
            x1,
            y1,
            np.minimum(x1 + rng.uniform(10, 300, 2000), 499),
            np.minimum(y1 + rng.uniform(10, 250, 2000), 374),
        ],
        1,
    ).round()
    rows = []
    mean = np.array(CFG.pixel_mean)
    for size in (227, 32):
        pad = context_padding(size)
        res = {}
        for name, fn in (
            ("ours", warp_windows),
            ("plain", plain_rcnn_warp),
            ("affine", affine_warp),
        ):
            fn(image, boxes[:50], size, pad, mean)
            t0 = time.perf_counter()
            res[name] = (fn(image, boxes, size, pad, mean), time.perf_counter() - t0)
        ours, plain = res["ours"][0].astype(int), res["plain"][0].astype(int)
        rows.append(
            {
                "size": size,
                "ours_windows_per_s": round(len(boxes) / res["ours"][1]),
                "plain_windows_per_s": round(len(boxes) / res["plain"][1]),
                "affine_windows_per_s": round(len(boxes) / res["affine"][1]),
                "ours_vs_plain": round(res["plain"][1] / res["ours"][1], 2),
                "ours_vs_affine": round(res["affine"][1] / res["ours"][1], 2),
                "max_grey_diff_vs_plain": int(np.abs(ours - plain).max()),
                "max_grey_diff_vs_affine_interior": int(
                    np.abs(ours - res["affine"][0].astype(int))[:, 4:-4, 4:-4].max()
                ),
            }
        )
    return rows


def recall(root: str) -> dict:
    anns = read_det_split(root, "val").annotations
    hits = n_gt = n_props = 0
    for a in anns:
        image, _ = decode_rgb(storage.read_bytes(a.image_url), CFG.max_pixels, 1, CFG.pixel_mean)
        props = selective_search(image, CFG.resize_width, CFG.max_proposals, CFG.min_box)
        gt = np.array([[b.xmin, b.ymin, b.xmax, b.ymax] for b in a.boxes]).reshape(-1, 4)
        n_props += len(props)
        n_gt += len(gt)
        if len(gt):
            hits += int((iou_matrix(gt, props).max(1) >= 0.5).sum())
    return {
        "recall_at_0.5": round(hits / max(n_gt, 1), 3),
        "proposals_per_image": round(n_props / len(anns), 1),
    }


def tree_uss_mb(pid: int) -> float:
    """Unique memory of a process and all its descendants (driver, raylet, Ray workers)."""
    import psutil

    total = 0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_full_info().uss
        except psutil.Error:
            pass
    return total / 2**20


def peak_memory(scenes: int) -> float:
    """Peak unique memory (MB) of a fresh process tree extracting ``scenes`` images."""
    code = (
        "import sys, tempfile; sys.path.insert(0, '.');"
        "from bench.extract import make_world, ray_extract;"
        f"d = tempfile.mkdtemp(); make_world(d + '/data', {scenes}); print('ready', flush=True);"
        "ray_extract(d + '/data', d + '/work', 2)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_uss_mb(proc.pid))
        time.sleep(0.25)
    if proc.returncode:
        raise RuntimeError("memory run failed")
    return round(peak, 1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scenes", type=int, default=64)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--memory", action="store_true", help="also run the N vs 10 N memory check")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = f"{tmp}/data"
        make_world(root, args.scenes)
        n, serial_s, warp_s = serial_loop(root)
        generate(f"{tmp}/warmup", toyworld_config("test", val1_scenes=2), progress=False)
        n_ray, ray_s, init_s, fixed_s = ray_extract(
            root, f"{tmp}/work", args.workers, f"{tmp}/warmup"
        )
        speedup = (n_ray / ray_s) / (n / serial_s)
        cold = (n_ray / (ray_s + fixed_s)) / (n / serial_s)
        result = {
            "images": n,
            "serial_images_per_s": round(n / serial_s, 2),
            "ray_images_per_s": round(n_ray / ray_s, 2),
            "ray_init_s": round(init_s, 2),
            "first_job_fixed_s": round(fixed_s, 2),
            "speedup": round(speedup, 2),
            "parallel_efficiency": round(speedup / args.workers, 2),
            "parallel_efficiency_with_first_job_costs": round(cold / args.workers, 2),
            "warp_share_of_extraction": round(warp_s / serial_s, 3),
            **recall(root),
            "warp": warp_bench(),
        }
    if args.memory:
        small, big = peak_memory(args.scenes), peak_memory(10 * args.scenes)
        result["tree_peak_uss_mb"] = {str(args.scenes): small, str(10 * args.scenes): big}
        result["memory_ratio_10x"] = round(big / small, 2)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
