"""Multiple-instance refinement of the held-out rows from their classification images."""

from __future__ import annotations

import argparse
import json

from jobs.common import add_config, config_from_args
from pipeline.mil.stage import run_mil
from pipeline.workdir import knn_name
from schemas.config import PipelineConfig

DESCRIPTION = "refine the held-out rows on their classification images (multiple-instance)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset root URL (the bags' images)")
    p.add_argument("--work", required=True, help="work dir URL: extract/mil, models/detector-*")
    p.add_argument(
        "--base",
        default=knn_name(PipelineConfig.k),
        help="the adapted detector to refine: models/detector-BASE.pt (default %(default)s)",
    )
    p.add_argument("--name", help="the refined detector's name (default BASE-mil)")
    p.add_argument("--overwrite", action="store_true", help="redo every category")
    add_config(p, "mil", skip=("images_per_category", "leaves"))  # the extraction's


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, "mil")
    print(json.dumps(run_mil(args.data, args.work, cfg, args.base, args.name, args.overwrite)))
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
