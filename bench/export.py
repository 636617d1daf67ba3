"""Exported detectors (``lsda export``) on the CPU: onnxruntime against torch, one thread each.

For the built-in world's small CNN (32 px) and AlexNet (227 px), each with a vocabulary of
``--categories`` rows (random weights: speed and agreement do not depend on training), the
same uint8 windows are scored by the torch scoring graph and by its ONNX export in
onnxruntime. Prints the file sizes, windows/s of both engines, their ratio, and the largest
absolute score difference. Usage: python bench/export.py [--categories 200] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.model.checkpoints import save_model  # noqa: E402
from pipeline.model.export import ScoringGraph, export_detector  # noqa: E402
from pipeline.model.nets import CategoryMap, get_model  # noqa: E402

MEAN = [123.68, 116.78, 103.94]
SIZES = {"smallcnn": (32, 512), "alexnet": (227, 64)}  # input px, windows per call


def rate(fn, windows: np.ndarray, seconds: float) -> float:
    """Windows/s of ``fn`` over repeated calls (one warm-up call first)."""
    fn(windows)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(windows)
        n += len(windows)
    return n / (time.perf_counter() - t0)


def one(model: str, categories: int, seconds: float, folder: str) -> None:
    import onnxruntime as ort

    size, batch = SIZES[model]
    torch.manual_seed(0)
    net = get_model(model, categories)
    wnids = CategoryMap(tuple(f"n{i:08d}" for i in range(categories)))
    url = os.path.join(folder, f"detector-{model}.pt")
    save_model(url, net, model, wnids, input_size=size, pixel_mean=MEAN)
    t0 = time.perf_counter()
    manifest = export_detector(url)
    export_s = time.perf_counter() - t0
    graph = ScoringGraph(net, MEAN, wnids.background_row).eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(manifest["files"]["onnx"]["url"], options)
    windows = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)

    def by_torch(w):
        with torch.no_grad():
            return graph(torch.from_numpy(w)).numpy()

    def by_onnx(w):
        return session.run(["scores"], {"windows": w})[0]

    gap = float(np.abs(by_torch(windows) - by_onnx(windows)).max())
    r_torch, r_onnx = rate(by_torch, windows, seconds), rate(by_onnx, windows, seconds)
    sizes = {f: round(v["bytes"] / 2**20, 1) for f, v in manifest["files"].items()}
    print(
        f"{model} ({size} px, {categories} categories): checkpoint "
        f"{os.path.getsize(url) / 2**20:.1f} MiB, exports {sizes} MiB in {export_s:.1f} s; "
        f"torch {r_torch:,.0f} windows/s, onnxruntime {r_onnx:,.0f} windows/s "
        f"(ratio {r_onnx / r_torch:.2f}); max |score gap| {gap:.1e}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--categories", type=int, default=200)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--models", default="smallcnn,alexnet")
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="lsda-bench-export-") as folder:
        for model in args.models.split(","):
            one(model, args.categories, args.seconds, folder)


if __name__ == "__main__":
    main()
