"""CPU cost of ``lsda mil`` per category (issue 24's goal: <= 2 s at 50 images, so that the
7,404 leaves of imagenet7k.yaml cost <= 4 core-hours), against two obvious alternatives: a Ray
task per category, which builds the negatives' pool for each category (ours: once per run,
shared by every actor through the object store), and rounds that score every bag with the network
again (ours: features kept for the rounds).

python bench/mil_cost.py --data ROOT --work WORK [--categories 8]

WORK: a finished ``lsda run`` (its ``mil`` split and ``detector-knn-5.pt``). One process, one
thread (an actor's share): per category, reading and warping its bags, fc7 features, the
rounds with their hard-negative mining; the pool's features (once per run) are timed apart.
"""

from __future__ import annotations

import argparse
import time

import torch

from pipeline.adapt.rows import with_bias
from pipeline.extract.stage import extracted_with
from pipeline.mil.bags import bag_features, bag_rows, shards_of
from pipeline.mil.negatives import local_pool
from pipeline.mil.refine import best_windows, fit_difference, refine_difference, settings_of
from pipeline.model.checkpoints import load_model
from pipeline.workdir import MIL_SPLIT, WorkDir
from schemas.config import load_config

LEAVES_7K = 7404


def ours(rows, args, model, mean, negatives, d0, settings) -> torch.Tensor:
    bags = [bag_features(r, args.data, model, mean, args.max_pixels) for r in rows]
    return refine_difference(d0, bags, negatives, settings).d


def every_round_again(rows, args, model, mean, negatives, d0, settings) -> torch.Tensor:
    """Each round reads, warps and scores the bags again: features are not kept."""
    d = d0
    for _ in range(settings.rounds):
        bags = [bag_features(r, args.data, model, mean, args.max_pixels) for r in rows]
        chosen = best_windows(bags, d, settings.top)
        pos = torch.cat([b[i] for b, i in zip(bags, chosen, strict=True)])
        neg = negatives.hardest(d, settings.hard)
        d = fit_difference(d0, pos, neg, settings.lam, settings.steps)
    return d


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--config", default="toyworld")
    p.add_argument("--categories", type=int, default=8)
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config).mil
    args.max_pixels = extracted_with(args.work, MIL_SPLIT).max_pixels
    model, categories, payload = load_model(WorkDir(args.work).model("knn-5"))
    mean, rows_w = payload["pixel_mean"], with_bias(model.output)
    t0 = time.process_time()
    negatives = local_pool(args.data, args.work, WorkDir(args.work).model("knn-5"), cfg.negatives)
    start = time.process_time() - t0
    shards = shards_of(args.work)
    wnids = [w for w in sorted(shards) if w in set(categories.wnids)][: args.categories]
    bg = categories.background_row
    times = {"ours": [], "every round again": []}
    for wnid in wnids:
        rows = bag_rows(args.work, shards[wnid], {wnid})
        d0 = rows_w[categories.rows([wnid])[0]] - rows_w[bg]
        results = []
        for name, fn in (("ours", ours), ("every round again", every_round_again)):
            t0 = time.process_time()
            results.append(fn(rows, args, model, mean, negatives, d0, settings_of(cfg)))
            times[name].append(time.process_time() - t0)
        assert torch.allclose(results[0], results[1])  # the same rounds, the same row
    per = {name: sum(t) / len(t) for name, t in times.items()}
    per["a task per category"] = per["ours"] + start
    print(
        f"{len(wnids)} categories, {cfg.images_per_category} bags each, {cfg.rounds} rounds; the "
        f"pool (features of {len(negatives)} negatives, once per run): {start:.2f} CPU s"
    )
    for name, s in per.items():
        hours = s * LEAVES_7K / 3600
        print(f"  {name}: {s:.3f} CPU s per category; {LEAVES_7K} leaves: {hours:.2f} core-hours")
    for name in ("a task per category", "every round again"):
        print(f"ratio ({name} / ours): {per[name] / per['ours']:.2f}x")


if __name__ == "__main__":
    main()
