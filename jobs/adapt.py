"""Output-layer adaptation: k-NN offsets from the categories with boxes to those without."""

from __future__ import annotations

import argparse
import json

from pipeline.adapt.stage import run_adapt

DESCRIPTION = "adapt the output rows of categories without boxes (k-NN / global offsets)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work", required=True, help="work dir URL with models/cls.pt, det-*.pt")
    p.add_argument("--det", default="all-fcB", help="detection fine-tune: models/det-DET.pt")
    p.add_argument("--k", type=int, default=5, help="neighbours; 0 = none; >= |B| = global")
    p.add_argument("--name", help="detector name (default knn-K / avg-offset)")
    p.add_argument("--overwrite", action="store_true")


def run(args: argparse.Namespace) -> int:
    print(json.dumps(run_adapt(args.work, args.det, args.k, args.name, args.overwrite)))
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
