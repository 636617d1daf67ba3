"""k-NN output-layer adaptation at vocabulary scale. Prints seconds, the ratio to the floor and
peak memory.

100,000 held-out categories against 10,000 with boxes, rows of 4,096 features + bias (AlexNet's
fc7), k = 5: ``pipeline.adapt.rows.adapt`` (chunked, writing the adapted rows over the input)
against the floor of the float32 matrix product of the same shape (queries x keys, the distance
computation every k-NN search needs), timed in the same run. Peak memory is the process's maximum
resident set, inputs included (goal: under 4 GiB).

Usage: python bench/adapt.py [--heldout 100000] [--trained 10000] [--dim 4097]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.adapt.rows import adapt  # noqa: E402


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--heldout", type=int, default=100_000)
    ap.add_argument("--trained", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=4097)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=4096)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    cls_a = torch.randn(args.heldout, args.dim, generator=g)
    cls_b = torch.randn(args.trained, args.dim, generator=g)
    det_b = cls_b + 0.1 * torch.randn(args.trained, args.dim, generator=g)
    inputs = peak_gib()

    t0 = time.perf_counter()
    result = adapt(cls_a, cls_b, det_b, args.k, args.chunk, out=cls_a)
    t_ours = time.perf_counter() - t0
    peak = peak_gib()

    t0 = time.perf_counter()
    for start in range(0, args.heldout, args.chunk):  # the product alone, same chunks
        torch.mm(result.rows[start : start + args.chunk], cls_b.T)
    t_floor = time.perf_counter() - t0

    print(f"{args.heldout} x {args.trained} categories, rows of {args.dim}, k = {args.k}")
    print(f"adapt (normalise, distances, top-k, offsets): {t_ours:7.1f} s")
    print(f"floor: float32 product of the same shape:     {t_floor:7.1f} s")
    print(f"ratio to the floor: {t_ours / t_floor:.2f}x (goal <= 1.5x)")
    print(f"peak memory: {peak:.2f} GiB (inputs alone: {inputs:.2f} GiB; goal < 4 GiB)")


if __name__ == "__main__":
    main()
