"""Score a split's proposals (or any images) with detectors; Parquet + COCO JSON (+ drawn)."""

from __future__ import annotations

import argparse
import json

from jobs.common import (
    add_scoring_arguments,
    config_from_args,
    glob_images,
    model_arg,
    scoring_from_args,
)
from pipeline.detect.onnx_engine import ENGINES
from pipeline.detect.stage import run_detect

DESCRIPTION = "detect: score proposals with detectors (Ray Data actors), NMS, write detections"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset root URL (for the category list)")
    p.add_argument("--work", required=True, help="work dir URL")
    p.add_argument(
        "--model",
        action="append",
        required=True,
        help="NAME=URL, or a file name in WORK/models (repeatable)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--split", help="score this split's extracted proposals")
    src.add_argument("--images", help="glob of images; proposals are extracted on the fly")
    p.add_argument("--all-categories", action="store_true", help="not only detection categories")
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--draw", type=int, default=0, help="draw detections on N images")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="torch",
        help="onnxruntime: score each model's ONNX export (lsda export), on the CPU",
    )
    add_scoring_arguments(p, "detect")


def _models(specs: list[str], work: str) -> dict[str, str]:
    out = {}
    for spec in specs:
        name, _, url = spec.partition("=")
        out[name.removesuffix(".pt")] = model_arg(url or spec, work)
    return out


def run(args: argparse.Namespace) -> int:
    images = glob_images(args.images) if args.images else None
    post = config_from_args(args, "detect")
    scoring, proposals = scoring_from_args(args)
    summary = run_detect(
        args.data,
        args.work,
        _models(args.model, args.work),
        args.split,
        images,
        post,
        args.all_categories,
        args.actors,
        args.draw,
        proposals,
        overwrite=args.overwrite,
        scoring=scoring,
        engine=args.engine,
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
