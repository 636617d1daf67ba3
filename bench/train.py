"""Training throughput (issue: fine-tuning with Ray Train). Prints ratios from one run.

1. Detection fine-tuning windows/s through Ray Train fed by the Ray Data input pipeline, one
   worker, against the same model, loss and minibatches fed from in-memory tensors in one
   process: the input pipeline's overhead.
2. The same Ray Train run with 2 workers vs 1: scaling on this machine.

Usage: python bench/train.py [--iterations 150]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.data.category_sets import set_b
from pipeline.extract.stage import run_extract  # noqa: E402
from pipeline.io.ray_env import start_local_ray  # noqa: E402
from pipeline.model.checkpoints import load_model  # noqa: E402
from pipeline.model.layers import configure_trainable, parse_layers  # noqa: E402
from pipeline.model.preprocess import to_input  # noqa: E402
from pipeline.toyworld.generate import generate  # noqa: E402
from pipeline.train.classifier import run_train_cls  # noqa: E402
from pipeline.train.detector import run_train_det  # noqa: E402
from pipeline.workdir import WorkDir  # noqa: E402
from schemas.arrow import BACKGROUND  # noqa: E402
from schemas.config import CategorySplit, TrainConfig, load_config, toyworld_config  # noqa: E402

EXTRACT = load_config("configs/toyworld.yaml").extract


def prepare(root: str) -> tuple[str, str]:
    data, work = f"{root}/data", f"{root}/work"
    generate(
        data,
        toyworld_config(
            "quick",
            det_categories=12,
            cls_images=40,
            det_train_scenes=60,
            val1_scenes=60,
            val2_scenes=4,
        ),
        workers=2,
        progress=False,
    )
    for split in ("cls", "det-train", "val1"):
        run_extract(data, work, split, EXTRACT, progress=False)
    cfg = replace(load_config("configs/toyworld.yaml").train_cls, epochs=1)
    run_train_cls(data, work, cfg)
    return data, work


def in_memory(data: str, work: str, cfg: TrainConfig) -> float:
    """The same loop on tensors already in memory: one process, one thread."""
    import pyarrow.parquet as pq

    torch.set_num_threads(1)
    model, cats, payload = load_model(WorkDir(work).model("cls.pt"))
    b = set_b(data, CategorySplit())
    rows = {w: i for i, w in enumerate(cats.wnids)} | {BACKGROUND: cats.background_row}
    tables = [
        pq.read_table(u)
        for s in ("det-train", "val1")
        for u in WorkDir(work).extract_parts(s, "windows")
    ]
    labels = [lb for t in tables for lb in t.column("label").to_pylist()]
    pixels = [px for t in tables for px in t.column("pixels").to_pylist()]
    keep = [i for i, lb in enumerate(labels) if lb in b or lb == BACKGROUND]
    images = torch.from_numpy(
        np.stack([np.frombuffer(pixels[i], np.uint8).reshape(32, 32, 3) for i in keep])
    )
    y = torch.tensor([rows[labels[i]] for i in keep])
    is_bg = y == cats.background_row
    fg_idx, bg_idx = torch.nonzero(~is_bg)[:, 0], torch.nonzero(is_bg)[:, 0]
    freezer = configure_trainable(
        model, parse_layers(cfg.train_layers), [cats.background_row, *cats.rows(b)]
    )
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    cols = torch.tensor(cats.rows(b) + [cats.background_row])
    col_of_row = torch.full((cats.background_row + 1,), -1)
    col_of_row[cols] = torch.arange(len(cols))
    mean = tuple(payload["pixel_mean"])
    t0 = time.perf_counter()
    for _ in range(cfg.iterations):
        idx = torch.cat(
            [
                fg_idx[torch.randint(len(fg_idx), (cfg.fg_per_batch,))],
                bg_idx[torch.randint(len(bg_idx), (cfg.bg_per_batch,))],
            ]
        )
        x = to_input(images[idx], 32, mean, train=True)
        loss = F.cross_entropy(model(x)[:, cols], col_of_row[y[idx]])
        opt.zero_grad()
        loss.backward()
        freezer.zero_grads()
        opt.step()
        freezer.restore()
    return cfg.iterations * (cfg.fg_per_batch + cfg.bg_per_batch) / (time.perf_counter() - t0)


def main() -> None:
    import ray

    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=150)
    args = p.parse_args()
    start_local_ray(num_cpus=2, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        data, work = prepare(tmp)
        base = replace(
            load_config("configs/toyworld.yaml").train_det,
            iterations=args.iterations,
            checkpoint_every=args.iterations,
        )
        memory = in_memory(data, work, base)
        rates = {}
        for workers in (1, 2):
            cfg = replace(base, workers=workers)
            rates[workers] = run_train_det(data, work, cfg, name=f"bench{workers}")["windows_per_s"]
    ray.shutdown()
    print(
        json.dumps(
            {
                "in_memory_windows_per_s": round(memory),
                "ray_data_1_worker_windows_per_s": round(rates[1]),
                "input_pipeline_overhead": round(1 - rates[1] / memory, 3),
                "ray_data_2_workers_windows_per_s": round(rates[2]),
                "scaling_2_vs_1": round(rates[2] / rates[1], 2),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
