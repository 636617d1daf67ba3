"""Validate a dataset through the readers; print a summary and every problem found."""

from __future__ import annotations

import argparse
import json

from pipeline.data.check import format_report, inspect_dataset

DESCRIPTION = "validate a dataset in the ImageNet layouts and summarise it (exit 1 on problems)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="dataset root URL (folder or s3://bucket/prefix)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    report = inspect_dataset(args.root)
    print(json.dumps(report.to_dict(), indent=1) if args.json else format_report(report))
    return 1 if report.problems else 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
