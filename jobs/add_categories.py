"""New categories from classification images alone, appended to a detector."""

from __future__ import annotations

import argparse
import json

from jobs.common import add_config, config_from_args
from pipeline.adapt.add_categories import run_add_categories
from pipeline.workdir import DEFAULT_BASE, DEFAULT_DETECTOR
from schemas.config import load_config

DESCRIPTION = (
    "add-categories: train output rows for new categories on fc7 features of their "
    "classification images, adapt them with k-NN offsets, append them to a detector"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, help="URL of <wnid>/<name>.JPEG folders")
    p.add_argument("--work", required=True, help="work dir URL of a finished run")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, help="model in WORK/models")
    p.add_argument(
        "--out", dest="out_model", help="model file in WORK/models to write (default: --detector)"
    )
    p.add_argument("--k", type=int, help="neighbours for the offsets; 0: none")
    p.add_argument("--base", default=DEFAULT_BASE, help="fine-tune giving the offsets")
    p.add_argument("--negatives", type=int, default=4096, help="classification images sampled")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps for the new rows")
    p.add_argument(
        "--mil",
        action="store_true",
        help="refine the new rows on their images as bags, as lsda mil does (the config's [mil])",
    )
    add_config(p, help="; its [run] k the neighbours, unless --k; its [mil] the refinement")


def run(args: argparse.Namespace) -> int:
    summary = run_add_categories(
        args.work,
        args.images,
        args.detector,
        args.out_model,
        config_from_args(args, "run").k,
        args.base,
        args.negatives,
        args.steps,
        # not config_from_args: --negatives and --steps are the new rows' training's here
        load_config(args.config).mil if args.mil else None,
    )
    print(json.dumps(summary))
    print(
        f"added {len(summary['added'])}, replaced {len(summary['replaced'])} categories from "
        f"{summary['images']} images in {summary['seconds']} s "
        f"({summary['seconds_per_category']} s per category); {len(summary['refused'])} refused",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
