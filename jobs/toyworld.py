"""Generate the built-in dataset in the ImageNet layouts."""

from __future__ import annotations

import argparse
import json
import os

from pipeline.toyworld.generate import generate
from schemas.config import TOYWORLD_SIZES, toyworld_config

DESCRIPTION = "generate the built-in dataset (ImageNet DET/CLS layouts) at a local or s3:// URL"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="dataset root URL (folder or s3://bucket/prefix)")
    p.add_argument(
        "--size",
        default="demo",
        choices=sorted(TOYWORLD_SIZES),
        help="preset: test, quick, demo, or imagenet (200 categories in class folders with "
        "ImageNet's spread of class counts)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--det-categories", type=int, help="K detection categories (half get boxes)")
    p.add_argument("--leaf-categories", type=int, help="extra classification-only categories")
    p.add_argument("--cls-images", type=int, help="classification images per detection category")
    p.add_argument("--leaf-cls-images", type=int, help="classification images per leaf category")
    p.add_argument(
        "--class-count-spread",
        type=float,
        help="classification images per category drawn from [n * (1 - spread), n]",
    )
    p.add_argument("--det-train-scenes", type=int)
    p.add_argument("--val1-scenes", type=int)
    p.add_argument("--val2-scenes", type=int)
    p.add_argument("--cls-format", choices=("folders", "tars", "mixed"))
    p.add_argument(
        "--det-train-every-category",
        action="store_true",
        default=None,
        help="DET train scenes of every detection category, in their categories' folders (as "
        "ImageNet's): boxes of set A for the oracle; the other fine-tunes leave those out",
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    config = toyworld_config(
        args.size,
        seed=args.seed,
        det_categories=args.det_categories,
        leaf_categories=args.leaf_categories,
        cls_images=args.cls_images,
        leaf_cls_images=args.leaf_cls_images,
        class_count_spread=args.class_count_spread,
        det_train_scenes=args.det_train_scenes,
        val1_scenes=args.val1_scenes,
        val2_scenes=args.val2_scenes,
        cls_format=args.cls_format,
        det_train_every_category=args.det_train_every_category,
    )
    summary = generate(args.out, config, args.workers, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
