"""Output-layer adaptation: k-NN offsets from the categories with boxes to those without."""

from __future__ import annotations

import argparse
import json

from jobs.common import add_config, config_from_args
from pipeline.adapt.stage import run_adapt
from pipeline.workdir import FINETUNES

DESCRIPTION = "adapt the output rows of categories without boxes (k-NN / global offsets)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work", required=True, help="work dir URL with models/cls.pt, det-*.pt")
    p.add_argument(
        "--det", default=FINETUNES["all-layers"], help="detection fine-tune: models/det-DET.pt"
    )
    p.add_argument("--name", help="detector name (default knn-K / avg-offset)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--k", type=int, help="neighbours; 0 = none; >= |B| = the global average")
    add_config(p, help="; its [run] k the neighbours, unless --k")


def run(args: argparse.Namespace) -> int:
    k = config_from_args(args, "run").k
    print(json.dumps(run_adapt(args.work, args.det, k, args.name, args.overwrite)))
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
