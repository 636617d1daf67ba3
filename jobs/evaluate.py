"""ILSVRC devkit evaluation of a detector's detections, with the false-positive analysis."""

from __future__ import annotations

import argparse
import json

from jobs.common import add_config, config_from_args
from pipeline.data.category_sets import held_back, set_b
from pipeline.evaluate.stage import run_evaluate

DESCRIPTION = "evaluate detections: mAP over trained / held-out / all, per category, errors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset root URL (ground truth)")
    p.add_argument("--work", required=True, help="work dir URL")
    p.add_argument("--name", required=True, help="detector name, as in WORK/detect/NAME")
    p.add_argument("--split", default="val2")
    p.add_argument(
        "--level",
        default="category",
        choices=("category", "parent"),
        help="parent: the WordNet parents' detections (score-vocab --hierarchy)",
    )
    add_config(p, "categories", help=" (as in the run: held-back categories count as 'added')")


def run(args: argparse.Namespace) -> int:
    sets = config_from_args(args, "categories")
    b, held = set_b(args.data, sets), held_back(args.data, sets)
    doc = run_evaluate(args.data, args.work, args.name, args.split, b, args.level, held)
    skip = ("categories", "errors_heldout")
    print(json.dumps({k: v for k, v in doc.items() if k not in skip}))
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
