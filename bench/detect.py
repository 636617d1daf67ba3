"""Scoring throughput (issue: detection and evaluation). Prints windows/s and time shares.

The six detectors of ``lsda run`` (three trunks: classifier, all-layers fine-tune, oracle; six
output layers) score the proposals of built-in val scenes, as ``lsda detect`` does:

1. In one process, one thread, per image: read + decode (I/O), warp, the network (every trunk
   once, every head), post-processing (background subtraction, per-class NMS, top-N). The
   share of time outside the network is what the issue bounds (goal <= 10%).
2. The same through ``run_detect`` (Ray Data, an actor pool of 2 on 2 cores) end to end, with
   Parquet/JSON writing: windows/s and the speed-up over the single process.

Weights are random (scoring time does not depend on them). Usage:
python bench/detect.py [--scenes 60] [--model smallcnn]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.data.categories import read_categories  # noqa: E402
from pipeline.detect.scoring import MultiDetector  # noqa: E402
from pipeline.detect.stage import run_detect  # noqa: E402
from pipeline.extract.stage import run_extract  # noqa: E402
from pipeline.io import storage  # noqa: E402
from pipeline.io.images import decode_rgb  # noqa: E402
from pipeline.io.ray_env import start_local_ray  # noqa: E402
from pipeline.model.checkpoints import save_model  # noqa: E402
from pipeline.model.nets import CategoryMap, get_model  # noqa: E402
from pipeline.toyworld.generate import generate  # noqa: E402
from pipeline.workdir import WorkDir  # noqa: E402
from schemas.config import (  # noqa: E402
    ExtractConfig,
    PostConfig,  # noqa: E402
    load_config,
    toyworld_config,
)

# detector -> the trunk it shares (as in lsda run: heads differ, trunks are shared)
DETECTORS = {
    "classifier": "cls",
    "bg-only": "cls",
    "all-layers": "det",
    "knn-5": "det",
    "avg-offset": "det",
    "oracle": "oracle",
}


def prepare(root: str, scenes: int, model: str) -> tuple[str, str, dict[str, str]]:
    data, work = f"{root}/data", f"{root}/work"
    cfg = toyworld_config("quick", cls_images=1, det_train_scenes=1, val1_scenes=1)
    generate(data, replace(cfg, val2_scenes=scenes))
    ext = load_config("configs/toyworld.yaml").extract
    run_extract(data, work, "val2", ext, progress=False)
    categories = CategoryMap(tuple(c.wnid for c in read_categories(data)))
    trunks = {}
    for name, trunk in DETECTORS.items():
        torch.manual_seed(len(trunks) if trunk not in trunks else list(trunks).index(trunk))
        net = get_model(model, categories.num_categories)
        if trunk in trunks:  # same layers 1-7, another output layer
            state = {k: v for k, v in trunks[trunk].items() if not k.startswith("output.")}
            net.load_state_dict(state, strict=False)
        trunks.setdefault(trunk, net.state_dict())
        save_model(
            WorkDir(work).model(f"{name}.pt"),
            net,
            model,
            categories,
            input_size=net.input_size,
            pixel_mean=list(ext.pixel_mean),
        )
    return data, work, {n: WorkDir(work).model(f"{n}.pt") for n in DETECTORS}


def in_process(work: str, urls: dict[str, str]) -> tuple[dict[str, float], int]:
    """Seconds per part of scoring, summed over the split's images; and the window count."""
    torch.set_num_threads(1)
    det = MultiDetector(urls, PostConfig())
    max_pixels = ExtractConfig.max_pixels
    rows = [
        r
        for u in WorkDir(work).extract_parts("val2", "proposals")
        for r in storage.read_table(u).to_pylist()
    ]
    t = dict.fromkeys(("io", "warp", "network", "post"), 0.0)
    windows = 0
    for r in rows:
        t0 = time.perf_counter()
        image, _ = decode_rgb(storage.read_bytes(r["image_url"]), max_pixels, 1, (0, 0, 0))
        boxes = np.asarray(r["boxes"], np.float32).reshape(-1, 4)
        t1 = time.perf_counter()
        # warping (and normalising) alone, to split it from the forward passes that logits()
        # also runs
        list(det.feeder.batches(image, boxes))
        t2 = time.perf_counter()
        logits = det.logits(image, boxes)
        t3 = time.perf_counter()
        det.postprocess(logits, boxes)
        t4 = time.perf_counter()
        t["io"] += t1 - t0
        t["warp"] += t2 - t1
        t["network"] += (t3 - t2) - (t2 - t1)
        t["post"] += t4 - t3
        windows += len(boxes)
    return t, windows


def main() -> None:
    import ray

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scenes", type=int, default=60)
    ap.add_argument("--model", default="smallcnn")
    args = ap.parse_args()
    start_local_ray(num_cpus=2, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        data, work, urls = prepare(tmp, args.scenes, args.model)
        parts, windows = in_process(work, urls)
        total = sum(parts.values())
        t0 = time.perf_counter()
        run_detect(data, work, urls, split="val2", actors=2)
        t_ray = time.perf_counter() - t0
    ray.shutdown()
    print(f"{args.scenes} scenes, {windows} windows, {len(urls)} detectors, model {args.model}")
    print("one process, one thread:")
    for k, v in parts.items():
        print(f"  {k:<8} {v:7.2f} s  {100 * v / total:5.1f}%")
    outside = 1 - parts["network"] / total
    print(f"  windows/s (all six detectors): {windows / total:.0f}")
    print(f"  share outside the network (I/O, warp, NMS): {100 * outside:.1f}%")
    print(f"  share of NMS and I/O alone: {100 * (parts['io'] + parts['post']) / total:.1f}%")
    print(f"Ray Data, 2 actors, end to end: {windows / t_ray:.0f} windows/s, ", end="")
    print(f"speed-up {total / t_ray:.2f}x over one process")


if __name__ == "__main__":
    main()
