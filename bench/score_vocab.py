"""Large-vocabulary post-processing (issue: the large-vocabulary detector). Prints ratios.

One image: N proposal windows with AlexNet fc7 features (4,096-d), an output layer of 7,604
categories + background. Ours (``pipeline.detect.vocab.VocabScorer``): the output layer in chunks,
each pruned at once (score >= 1, best 10 windows per category), then per-class NMS 0.1,
cross-class NMS 0.4, at most 100 classes. The obvious alternative (``naive_detect``): the full
windows x categories score matrix, then a loop over the categories (threshold + NMS each),
then the same cross-class step. Both timed in the same run; and AlexNet's forward pass to fc7
on the same windows (timed on ``--forward-windows`` and scaled to N), the network time that
post-processing is compared with.

Scores are random with a spread that puts ~1% of (window, category) pairs above the
threshold. Usage: python bench/score_vocab.py [--windows 2000] [--categories 7604]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.detect.vocab import (  # noqa: E402
    Candidates,
    VocabPostConfig,
    VocabScorer,
    naive_post,
    prune,
)
from pipeline.model.nets import get_model  # noqa: E402


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def case(n: int, k: int, dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.relu(torch.randn(n, dim, generator=g))
    weight = torch.randn(k + 1, dim, generator=g) * (0.45 / dim**0.5)
    bias = torch.zeros(k + 1)
    xy = torch.randint(0, 400, (n, 2), generator=g).float()
    wh = torch.randint(16, 200, (n, 2), generator=g).float()
    return feats, torch.cat([xy, xy + wh], 1), weight, bias


@torch.no_grad()
def forward_seconds(windows: int, sample: int) -> float:
    model = get_model("alexnet", 10).eval()
    x = torch.randn(sample, 3, 227, 227)
    model.fc7_features(x[:8])  # warm-up
    _, t = timed(model.fc7_features, x)
    return t * windows / sample


def post_ours(scorer: VocabScorer, chunks, boxes, cfg: VocabPostConfig):
    """What ``VocabScorer.detect`` does after each chunk's product."""
    return scorer.finish(Candidates.cat([prune(scores, c0, cfg) for c0, scores in chunks]), boxes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--windows", type=int, default=2000)
    ap.add_argument("--categories", type=int, default=7604)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--forward-windows", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(1)  # one scoring actor per core, as lsda runs it
    feats, boxes, weight, bias = case(args.windows, args.categories, args.dim)
    cfg = VocabPostConfig()
    scorer = VocabScorer(weight, bias, cfg)

    with torch.no_grad():
        chunks, t_layer = timed(lambda: list(scorer.chunks(feats)))
        ours, t_post = timed(post_ours, scorer, chunks, boxes, cfg)
        full = torch.cat([c for _, c in chunks], 1)  # the naive path's score matrix
        naive, t_naive_post = timed(naive_post, full, boxes, cfg)
    t_forward = forward_seconds(args.windows, args.forward_windows)

    print(f"{args.windows} windows x {args.categories} categories, fc7 of {args.dim}, one thread")
    print(f"AlexNet forward to fc7 (scaled from {args.forward_windows}): {t_forward:8.2f} s")
    print(f"output layer, chunked products alone:           {t_layer:8.2f} s")
    print(f"ours, pruning + NMS:                             {t_post:8.3f} s "
          f"({len(ours[1])} detections)")  # fmt: skip
    print(f"naive, per-class threshold + NMS loop:           {t_naive_post:8.3f} s "
          f"({len(naive[1])} detections)")  # fmt: skip
    print(f"post-processing, ours vs naive: {t_post:.3f} s vs {t_naive_post:.3f} s: "
          f"{t_naive_post / t_post:.1f}x faster (goal >= 10x)")  # fmt: skip
    print(
        f"post-processing share of the network forward: {100 * t_post / t_forward:.1f}% "
        "(goal <= 10%)"
    )


if __name__ == "__main__":
    main()
