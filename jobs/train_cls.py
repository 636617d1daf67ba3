"""K-way classification fine-tuning on the classification shards, with Ray Train."""

from __future__ import annotations

import argparse
import json

from jobs.common import add_config, config_from_args
from pipeline.train.classifier import run_train_cls

DESCRIPTION = "train the K-way classifier on classification shards (Ray Train, DDP)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset root URL (for the category list)")
    p.add_argument("--work", required=True, help="work dir URL; writes WORK/models/cls.pt")
    p.add_argument("--overwrite", action="store_true", help="retrain even if cls.pt exists")
    add_config(p, "train_cls", "categories")


def run(args: argparse.Namespace) -> int:
    cfg, sets = config_from_args(args, "train_cls"), config_from_args(args, "categories")
    print(json.dumps(run_train_cls(args.data, args.work, cfg, args.overwrite, sets)))
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
