"""Detection fine-tuning on warped windows: background row, chosen layers, set B rows."""

from __future__ import annotations

import argparse
import json

from jobs.common import add_config, config_from_args
from pipeline.model.layers import TABLE1
from pipeline.train.detector import run_train_det

DESCRIPTION = "detection fine-tuning on windows (Ray Train): the rows of the paper's Table 1"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset root URL (for the category list)")
    p.add_argument("--work", required=True, help="work dir URL; writes WORK/models/det-NAME.pt")
    p.add_argument("--name", help="model name (default: from --train-layers, or 'oracle')")
    p.add_argument("--overwrite", action="store_true", help="retrain even if the model exists")
    add_config(p, "train_det", "categories")
    p.epilog = "train-layers settings of Table 1: " + ", ".join(TABLE1)


def run(args: argparse.Namespace) -> int:
    cfg, sets = config_from_args(args, "train_det"), config_from_args(args, "categories")
    print(json.dumps(run_train_det(args.data, args.work, cfg, args.name, args.overwrite, sets)))
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
