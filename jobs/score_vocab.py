"""Score images or proposal shards against a detector's whole vocabulary."""

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
from pipeline.detect.vocab_stage import run_score_vocab
from pipeline.workdir import DEFAULT_DETECTOR

DESCRIPTION = (
    "score-vocab: every category of a detector (thousands), chunked, per-class then "
    "cross-class NMS, optional WordNet parents"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset root URL (for the hierarchy)")
    p.add_argument("--work", required=True, help="work dir URL")
    p.add_argument("--model", default=DEFAULT_DETECTOR, help="URL, or a model in WORK/models")
    p.add_argument("--name", default="vocab", help="outputs go to WORK/detect/NAME/SPLIT")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--split", help="score this split's extracted proposals")
    src.add_argument("--images", help="glob of images; proposals are extracted on the fly")
    p.add_argument("--hierarchy", action="store_true", help="also score internal WordNet nodes")
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--draw", type=int, default=0, help="draw detections on N images")
    p.add_argument("--overwrite", action="store_true")
    add_scoring_arguments(p, "score_vocab")


def run(args: argparse.Namespace) -> int:
    model = model_arg(args.model, args.work)
    post = config_from_args(args, "score_vocab")
    scoring, proposals = scoring_from_args(args)
    summary = run_score_vocab(
        args.data,
        args.work,
        model,
        args.name,
        args.split,
        glob_images(args.images) if args.images else None,
        post,
        args.hierarchy,
        args.actors,
        args.draw,
        proposals,
        overwrite=args.overwrite,
        scoring=scoring,
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
