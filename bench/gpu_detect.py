"""Scoring at the GPU's speed: AlexNet at 227 px, 2,000 windows per image, end to end from JPEG
bytes, beside the model-only ceiling of the same call, and where the time goes.

1. Ceiling: the network alone (trunk to fc7, one output layer) on a batch already on the
   device, in the chosen precision: windows/s.
2. End to end, one process as one ``lsda detect`` actor runs it, the next image read and
   decoded on a thread while this one is scored (``fanout.images_ahead``): JPEG bytes ->
   decode on the CPU -> the image to the device -> every window cut out there -> the network
   -> background subtraction, per-class NMS, top-N on the device -> detections on the host.
   Images/s, windows/s, their share of the ceiling, peak GPU memory, host syncs per image.
3. Phases, each timed alone over the same images (CUDA events on a GPU): decode, copy, warp,
   network, post-processing; the GPU-busy share of the end-to-end loop is the device phases'
   time over its wall time.
4. A batch sweep (windows per forward pass, 512 to 4,096) and images with 500 to 2,500
   windows each.

Random weights (speed does not depend on them), 200 categories (ILSVRC DET), images of 500 x 375
with random boxes. The GPU check runs it; on a CPU it runs too, slowly (use few images):
python bench/gpu_detect.py [--device cuda] [--precision bf16] [--warp auto] [--images 40]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.warp import proposals, scene  # noqa: E402
from pipeline.detect.fanout import images_ahead  # noqa: E402
from pipeline.detect.scoring import MultiDetector  # noqa: E402
from pipeline.io.images import decode_rgb  # noqa: E402
from pipeline.model.checkpoints import save_model  # noqa: E402
from pipeline.model.host_syncs import HostSyncCounter, from_host, on_device  # noqa: E402
from pipeline.model.nets import CategoryMap, get_model  # noqa: E402
from schemas.config import ExtractConfig, PostConfig, ScoringConfig  # noqa: E402

MEAN = (123.68, 116.78, 103.94)
DEVICE_PHASES = ("copy", "warp", "network", "post")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class PhaseClock:
    """Seconds per phase: CUDA events for device work on a GPU, the wall clock otherwise."""

    def __init__(self, device: torch.device):
        self.device, self.seconds = device, defaultdict(float)
        self._events: list = []

    @contextlib.contextmanager
    def phase(self, name: str):
        if self.device.type != "cuda" or name == "decode":  # host work: the wall clock
            t0 = time.perf_counter()
            yield
            self.seconds[name] += time.perf_counter() - t0
            return
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        yield
        end.record()
        self._events.append((name, start, end))

    def settle(self) -> dict[str, float]:
        sync(self.device)
        for name, start, end in self._events:
            self.seconds[name] += start.elapsed_time(end) / 1000
        self._events.clear()
        return dict(self.seconds)


def make_detector(args, batch: int) -> MultiDetector:
    scoring = ScoringConfig(
        gpus=args.device == "cuda", precision=args.precision, warp=args.warp,
        windows_per_batch=batch,
    )  # fmt: skip
    categories = CategoryMap(tuple(f"n{i:08d}" for i in range(200)))
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        url = f"{tmp}/alexnet.pt"
        model = get_model("alexnet", categories.num_categories)
        save_model(url, model, "alexnet", categories, input_size=227, pixel_mean=list(MEAN))
        return MultiDetector({"alexnet": url}, PostConfig(), scoring=scoring)


def ceiling(det: MultiDetector, repeats: int) -> float:
    """Windows/s of the network alone on inputs already on the device."""
    x = torch.randn(det.feeder.batch, 3, det.input_size, det.input_size, device=det.device)
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
    return det.feeder.batch * repeats / (time.perf_counter() - t0)


def jpeg_files(tmp: str, jpegs: list[bytes], boxes: list[np.ndarray]) -> dict:
    """The images as files, as an actor's batch names them (its reads go through storage)."""
    urls = []
    for i, data in enumerate(jpegs):
        urls.append(f"{tmp}/{i:05d}.jpg")
        with open(urls[-1], "wb") as f:
            f.write(data)
    return {"image_id": [str(i) for i in range(len(urls))], "image_url": urls, "boxes": boxes}


def end_to_end(det: MultiDetector, batch: dict) -> float:
    """Seconds for every image as an actor scores them: read and decode ahead, score."""
    proposals = ExtractConfig(max_pixels=64_000_000)
    t0 = time.perf_counter()
    for _, image, boxes in images_ahead(batch, det.mean, proposals):
        det.score(image, boxes)
    sync(det.device)
    return time.perf_counter() - t0


def phases(det: MultiDetector, jpegs: list[bytes], boxes: list[np.ndarray]) -> dict:
    """Each phase alone over every image, its inputs made before it."""
    clock = PhaseClock(det.device)
    images = []
    for data in jpegs:
        with clock.phase("decode"):
            images.append(decode_rgb(data, 64_000_000, 1, MEAN)[0])
    for image, b in zip(images, boxes, strict=True):
        with clock.phase("copy"):
            on_device(from_host(image), det.device).permute(2, 0, 1).float()
            boxes_t = on_device(torch.from_numpy(b), det.device)
        with clock.phase("warp"):
            xs = list(det.feeder.batches(image, b, boxes_t))
        with clock.phase("network"), torch.no_grad(), det.feeder.autocast():
            parts = [det.batch_logits(x) for x in xs]
            logits = {n: torch.cat([p[n] for p in parts]) for n in det.heads}
        with clock.phase("post"):
            det.postprocess(logits, boxes_t)
    return clock.settle()


def syncs_per_image(det: MultiDetector, jpegs, boxes) -> float:
    image = decode_rgb(jpegs[0], 64_000_000, 1, MEAN)[0]
    with HostSyncCounter() as counter:
        det.score(image, boxes[0])
    passes = counter.counts["read:nonzero"]
    return counter.total + passes  # + each NMS pass's own, inside torchvision


def run_one(args, batch: int, jpegs, boxes, tmp: str, detailed: bool) -> dict:
    det = make_detector(args, batch)
    if det.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    peak = ceiling(det, repeats=max(1, 8192 // det.feeder.batch) if args.device == "cuda" else 1)
    files = jpeg_files(tmp, jpegs, boxes)
    end_to_end(det, {k: v[:1] for k, v in files.items()})  # the first image pays cuDNN's tuning
    seconds = end_to_end(det, files)
    windows = sum(len(b) for b in boxes)
    out = {
        "batch": det.feeder.batch,
        "ceiling_windows_per_s": round(peak),
        "images_per_s": round(len(jpegs) / seconds, 2),
        "windows_per_s": round(windows / seconds),
        "share_of_ceiling": round(windows / seconds / peak, 3),
    }
    if det.device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if detailed:
        took = phases(det, jpegs, boxes)
        out["phases_ms_per_image"] = {k: round(1000 * v / len(jpegs), 2) for k, v in took.items()}
        out["gpu_busy_share"] = round(sum(took.get(p, 0) for p in DEVICE_PHASES) / seconds, 3)
        out["host_syncs_per_image"] = syncs_per_image(det, jpegs, boxes)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--warp", default="auto", choices=["auto", "cv2", "torch"])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--windows", type=int, default=2000)
    ap.add_argument("--sweep", default="512,1024,2048,4096", help="windows per pass ('': none)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as a scoring actor runs
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    images = [scene(rng) for _ in range(args.images)]
    jpegs = [
        cv2.imencode(".jpg", im[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        for im in images
    ]
    fixed = [proposals(rng, args.windows, *im.shape[:2]) for im in images]
    counts = rng.integers(args.windows // 4, args.windows * 5 // 4 + 1, len(images))
    varied = [proposals(rng, int(n), *im.shape[:2]) for n, im in zip(counts, images, strict=True)]
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU, one thread"
    print(f"device {name}; {args.precision}, {args.images} images, {args.windows} windows each")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["default"] = r = run_one(args, 0, jpegs, fixed, tmp, detailed=True)
        print(
            f"end to end from JPEG bytes: {r['images_per_s']} images/s, "
            f"{r['windows_per_s']:,} windows/s = {100 * r['share_of_ceiling']:.0f}% of the "
            f"model-only {r['ceiling_windows_per_s']:,} windows/s (batch {r['batch']}); "
            f"GPU busy {100 * r['gpu_busy_share']:.0f}% of the loop; "
            f"{r['host_syncs_per_image']} host syncs per image"
            + (f"; peak memory {r['peak_memory_gib']} GiB" if "peak_memory_gib" in r else "")
        )
        print("phases, ms per image (each alone):", r["phases_ms_per_image"])
        for batch in [int(b) for b in args.sweep.split(",") if b]:
            results[f"batch-{batch}"] = r = run_one(args, batch, jpegs, fixed, tmp, False)
            print(
                f"batch {batch}: ceiling {r['ceiling_windows_per_s']:,} windows/s, end to end "
                f"{r['images_per_s']} images/s ({100 * r['share_of_ceiling']:.0f}%)"
                + (f", peak {r['peak_memory_gib']} GiB" if "peak_memory_gib" in r else "")
            )
        results["varied"] = r = run_one(args, 0, jpegs, varied, tmp, False)
        print(
            f"{counts.min()}-{counts.max()} windows per image: {r['images_per_s']} images/s, "
            f"{r['windows_per_s']:,} windows/s ({100 * r['share_of_ceiling']:.0f}% of ceiling)"
        )
    print(json.dumps({"gpu_detect": results}))


if __name__ == "__main__":
    main()
