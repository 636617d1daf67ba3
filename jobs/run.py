"""The whole pipeline and the paper's ablation table, from one command."""

from __future__ import annotations

import argparse

from jobs.common import add_max_bad
from pipeline.run import run_pipeline
from pipeline.workdir import WorkDir

DESCRIPTION = "run every stage (extract .. report) and print the paper's ablation table"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset root URL")
    p.add_argument("--work", required=True, help="work dir URL (finished stages are skipped)")
    p.add_argument(
        "--config",
        default="toyworld",
        help="a shipped config (toyworld, ilsvrc13, imagenet7k) or a YAML path/URL",
    )
    p.add_argument("--quick", action="store_true", help="apply the config's [quick] section")
    p.add_argument("--no-progress", action="store_true")
    add_max_bad(p)


def run(args: argparse.Namespace) -> int:
    run_pipeline(
        args.data,
        args.work,
        args.config,
        args.quick,
        progress=not args.no_progress,
        max_bad=args.max_bad,
    )
    print(f"report: {WorkDir(args.work).report_page()}")
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
