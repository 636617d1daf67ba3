"""Options every stage shares, and the glue between argparse and a stage's ``run``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--s3-endpoint",
        help="S3 endpoint URL for s3:// paths (e.g. a local moto/minio); "
        "otherwise the standard AWS variables apply",
    )


def apply_common(args: argparse.Namespace) -> None:
    if getattr(args, "s3_endpoint", None):
        # An environment variable reaches Ray workers too (runtime_env inherits it).
        os.environ["LSDA_S3_ENDPOINT"] = args.s3_endpoint


def stage_main(
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """``python -m jobs.<stage>``: the same arguments as ``lsda <stage>``."""
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser)
    add_common(parser)
    args = parser.parse_args(argv)
    apply_common(args)
    return run(args)


def exit_with(code: int) -> None:
    sys.exit(code)
