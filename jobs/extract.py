"""Selective-search proposals, labelled warped windows and classification shards."""

from __future__ import annotations

import argparse
import json

from jobs.common import add_config, add_max_bad, config_from_args
from pipeline.extract.stage import format_summary, run_extract

DESCRIPTION = "extract proposals, warped training windows or classification shards (Ray Data)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset root URL")
    p.add_argument("--work", required=True, help="work dir URL (outputs under WORK/extract/)")
    p.add_argument(
        "--split",
        required=True,
        choices=("det-train", "val", "val1", "val2", "cls", "mil"),
        help="mil: the held-out categories' classification images as bags (lsda mil)",
    )
    p.add_argument(
        "--windows",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write labelled windows (default: for det-train and val1)",
    )
    p.add_argument(
        "--oracle",
        action="store_true",
        help="label the windows with every category's boxes, not set B's only (the oracle's "
        "windows, in WORK/extract/SPLIT-oracle)",
    )
    p.add_argument("--workers", type=int, help="concurrent shard tasks (default: all CPUs)")
    p.add_argument("--overwrite", action="store_true", help="discard earlier results of the split")
    p.add_argument("--no-progress", action="store_true")
    add_max_bad(p)
    add_config(p, "extract", "categories", skip=("pixel_mean",))
    p.add_argument(
        "--images-per-category",
        type=int,
        help="mil: the classification images sampled per category (default: the config's [mil])",
    )
    p.add_argument(
        "--leaves",
        action=argparse.BooleanOptionalAction,
        help="mil: bags of the leaf categories too, not set A's only (default: [mil])",
    )


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, "extract")
    summary = run_extract(
        args.data,
        args.work,
        args.split,
        cfg,
        args.windows,
        args.workers,
        args.overwrite,
        progress=not args.no_progress,
        oracle=args.oracle,
        sets=config_from_args(args, "categories"),
        max_bad=args.max_bad,
        bags=config_from_args(args, "mil"),
    )
    print(format_summary(summary))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
