"""Training at the GPU's speed: AlexNet-227 detection fine-tuning steps (``train-det``'s own
``det_step``: 32 foreground + 96 background windows, all layers + fcB, SGD) two ways, in one
call:

1. the ceiling: a synthetic minibatch already on the device, the same step again and again;
2. train-det's real input path: JPEG window shards (made here, as extraction writes them) read
   by Ray Data, split into fg/bg minibatches by the row pools, moved by ``device_batches``
   (pinned, non-blocking on a GPU), then the same step; twice: the windows decoded by the read
   tasks with OpenCV, and decoded in ``device_batches`` in one call (nvJPEG on a GPU, the
   default there; ``LSDA_WINDOW_DECODE``).

It prints both rates (steps/s, windows/s) and their ratio: how much of the GPU the input path
leaves idle. On a GPU, bf16 autocast and channels-last as train-det runs there; on a CPU it runs
too, slowly (few steps): python bench/gpu_train.py [--device cuda] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.warp import scene  # noqa: E402
from pipeline.io.ray_env import ensure_ray  # noqa: E402
from pipeline.model.layers import configure_trainable, parse_layers  # noqa: E402
from pipeline.model.nets import CategoryMap, get_model  # noqa: E402
from pipeline.model.preprocess import mean_tensor  # noqa: E402
from pipeline.train.data import WINDOW_READER  # noqa: E402
from pipeline.train.detector import det_step, fg_then_bg  # noqa: E402
from pipeline.train.device_feed import autocast, device_batches, setup_for_training  # noqa: E402
from pipeline.train.stream import ShardStream, configure_worker_data, split_minibatches  # noqa: E402
from schemas.arrow import BACKGROUND, WINDOW_SCHEMA  # noqa: E402

SIZE, N_FG, N_BG, CATEGORIES = 227, 32, 96, 20
MEAN = (123.68, 116.78, 103.94)


def window_shards(folder: str, windows: int, files: int, seed: int = 0) -> list[str]:
    """JPEG windows of random scenes, a quarter labelled with one of the categories."""
    rng = np.random.default_rng(seed)
    urls = []
    for f in range(files):
        rows = []
        for i in range(windows // files):
            image = scene(rng, 260, 260)
            y, x = rng.integers(0, 260 - 60, 2)
            crop = cv2.resize(image[y : y + 60, x : x + 60], (SIZE, SIZE))
            fg = rng.random() < 0.25
            rows.append({
                "image_id": f"{f}-{i}", "label": f"n{rng.integers(CATEGORIES):08d}" if fg
                else BACKGROUND, "iou": 0.6 if fg else 0.1, "overlap_wnid": None,
                "source": "proposal", "box": [0.0, 0.0, 59.0, 59.0], "size": SIZE,
                "encoding": "jpeg",
                "pixels": cv2.imencode(".jpg", crop[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[
                    1].tobytes(),
            })  # fmt: skip
        urls.append(f"{folder}/part-{f:05d}.parquet")
        pq.write_table(pa.Table.from_pylist(rows, schema=WINDOW_SCHEMA), urls[-1])
    return urls


def steps_per_s(step, batches, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):  # cuDNN's autotuning, allocations, the stream's first reads
        step(next(batches))
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step(next(batches))
    loss.item()  # the last step done
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--windows", type=int, default=4096, help="windows in the shards made here")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # as a CPU training worker runs
    categories = CategoryMap(tuple(f"n{i:08d}" for i in range(CATEGORIES)))
    bg = categories.background_row
    torch.manual_seed(0)
    model = get_model("alexnet", CATEGORIES)
    freezer = configure_trainable(model, parse_layers("all+fcB"), list(range(bg + 1)))
    model = setup_for_training(model, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.001, momentum=0.9, weight_decay=5e-4)
    cols = torch.arange(bg + 1, device=device)
    mean, amp = mean_tensor(MEAN, device), autocast(device)

    def step(batch: dict) -> torch.Tensor:
        return det_step(model, optimizer, freezer, batch, cols, cols, SIZE, mean, amp)[0]

    g = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.randint(0, bg, (N_FG,), generator=g), torch.full((N_BG,), bg)])
    images = torch.randint(0, 256, (N_FG + N_BG, SIZE, SIZE, 3), dtype=torch.uint8, generator=g)
    (synthetic,) = device_batches([{"image": images, "label": labels}], device, SIZE, True)
    ceiling = steps_per_s(step, iter(lambda: synthetic, None), args.steps, args.warmup, device)
    ensure_ray()
    configure_worker_data()
    fed = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = window_shards(tmp, args.windows, files=8)
        rows = {w: i for i, w in enumerate(categories.wnids)} | {BACKGROUND: bg}
        for decode in ("host", "device"):  # by the read tasks (OpenCV), or in one call there
            kwargs = {"rows": rows, "labels": set(rows), "decode": decode}
            per_step = N_FG + N_BG
            stream = ShardStream(files, WINDOW_READER, kwargs, 0, 0, 1).endless(
                per_step, (0,), 8 * per_step, "training window"
            )
            minibatches = split_minibatches(stream, bg, N_FG, N_BG, cap=8 * per_step)
            batches = device_batches(fg_then_bg(minibatches), device, SIZE, train=True)
            fed[decode] = steps_per_s(step, batches, args.steps, args.warmup, device)
            stream.close()
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU, one thread"
    per = N_FG + N_BG
    print(f"train-det step, AlexNet {SIZE}, {per} windows, {name}:")
    print(f"  synthetic batch on the device (ceiling): {ceiling:.2f} steps/s, "
          f"{ceiling * per:,.0f} windows/s")  # fmt: skip
    for decode, rate in fed.items():
        share = 100 * rate / ceiling
        print(f"  train-det's input path, JPEG decoded on the {decode}: {rate:.2f} steps/s, "
              f"{rate * per:,.0f} windows/s = {share:.0f}% of the ceiling")  # fmt: skip
    result = {
        "ceiling_steps_per_s": ceiling,
        **{f"{d}_decode_steps_per_s": r for d, r in fed.items()},
    }
    print(json.dumps({"gpu_train": {k: round(v, 3) for k, v in result.items()}}))


if __name__ == "__main__":
    main()
