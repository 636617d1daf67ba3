"""``lsda``: one console script, one subcommand per stage."""

from __future__ import annotations

import argparse
import importlib
import sys

from jobs.common import add_common, run_stage

# subcommand -> module in jobs/ with DESCRIPTION, add_arguments(parser) and run(args)
STAGES = {
    "toyworld": "jobs.toyworld",
    "check-data": "jobs.check_data",
    "extract": "jobs.extract",
    "train-cls": "jobs.train_cls",
    "train-det": "jobs.train_det",
    "adapt": "jobs.adapt",
    "mil": "jobs.mil",
    "detect": "jobs.detect",
    "evaluate": "jobs.evaluate",
    "score-vocab": "jobs.score_vocab",
    "export": "jobs.export",
    "add-categories": "jobs.add_categories",
    "run": "jobs.run",
    "submit": "jobs.submit",
    "jobs": "jobs.job_control",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lsda",
        description="Large Scale Detection through Adaptation on Ray: "
        "turn image classifiers into object detectors for categories without boxes.",
    )
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, module_name in STAGES.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.DESCRIPTION, description=module.DESCRIPTION)
        module.add_arguments(p)
        add_common(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_stage(args.stage, args, args.run)


if __name__ == "__main__":
    sys.exit(main())
