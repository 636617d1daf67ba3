"""Options every stage shares, and the glue between argparse and a stage's ``run``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--s3-endpoint",
        help="S3 endpoint URL for s3:// paths (e.g. a local moto/minio); "
        "otherwise the standard AWS variables apply",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an input or config error"
    )


def user_errors() -> tuple[type[BaseException], ...]:
    """What a user can fix (bad data, a missing file or config, a bad value, a stale work dir):
    one line and exit code 2, not a traceback."""
    import yaml

    from pipeline.extract.stage import StaleWorkDir

    return (ValueError, FileNotFoundError, NotADirectoryError, StaleWorkDir, yaml.YAMLError)


def run_stage(name: str, args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    """``run(args)``, with the user's errors as one line on stderr and exit code 2."""
    try:
        apply_common(args)
        return run(args)
    except user_errors() as exc:
        if getattr(args, "debug", False):
            raise
        lines = [x for x in str(exc).strip().splitlines() if x.strip()] or [type(exc).__name__]
        # an error raised in a Ray task arrives with its remote traceback: its last line names it
        message = lines[0] if len(lines) == 1 else lines[-1].strip()
        print(f"lsda {name}: error: {message} (--debug for the traceback)", file=sys.stderr)
        return 2


def add_address(parser: argparse.ArgumentParser) -> None:
    """The cluster to talk to (``lsda submit``, ``lsda jobs``)."""
    parser.add_argument(
        "--address", help="the cluster's job server, http://HEAD:8265 (or RAY_ADDRESS)"
    )


def apply_common(args: argparse.Namespace) -> None:
    from pipeline.io.ray_env import quiet_ray_defaults
    from pipeline.io.storage import absolute

    quiet_ray_defaults()
    if getattr(args, "config", None):
        from schemas.config import config_url

        args.config = config_url(args.config)
    for name in ("data", "work", "out"):
        if getattr(args, name, None):
            setattr(args, name, absolute(getattr(args, name)))
    if getattr(args, "s3_endpoint", None):
        # An environment variable reaches Ray workers too (runtime_env inherits it).
        os.environ["LSDA_S3_ENDPOINT"] = args.s3_endpoint


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple = ()) -> None:
    """One ``--field-name`` option per dataclass field; unset options keep the YAML/default."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction)
        elif isinstance(f.default, int | float | str):
            parser.add_argument(flag, dest=f.name, type=type(f.default), metavar=f.name.upper())


def config_from_args(args: argparse.Namespace, section: str, cls: type):
    """``cls`` from the ``--config`` file's ``section``, with the command line on top."""
    from schemas.config import load_section

    names = [f.name for f in dataclasses.fields(cls)]
    overrides = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return load_section(getattr(args, "config", None), section, cls, **overrides)


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """``detect`` and ``score-vocab``: the device options, and a config for the proposals."""
    from schemas.config import ScoringConfig

    parser.add_argument(
        "--config",
        help="YAML config: [scoring] sets the device options, [extract] the selective search "
        "for --images (default: the settings WORK's det-train split was extracted with)",
    )
    add_config_arguments(parser, ScoringConfig)


def scoring_from_args(args: argparse.Namespace):
    """(ScoringConfig, the proposal settings for images without stored proposals)."""
    from pipeline.extract.stage import extracted_with
    from schemas.config import ExtractConfig, ScoringConfig, load_section

    scoring = config_from_args(args, "scoring", ScoringConfig)
    if args.config:
        return scoring, load_section(args.config, "extract", ExtractConfig)
    proposals = extracted_with(args.work, "det-train")
    if proposals is None and getattr(args, "images", None):
        raise ValueError(
            "--images: no proposal settings; pass --config (its [extract] section) or a --work "
            "whose det-train split was extracted, so that scoring sees training's proposals"
        )
    return scoring, proposals or ExtractConfig()


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
    return run_stage(parser.prog.removesuffix(".py"), args, run)


def glob_images(pattern: str) -> list[str]:
    """Image URLs matching a glob (local or ``s3://``); exits naming the pattern if none."""
    from pipeline.io import storage

    fs, path = storage.get_fs(pattern)
    images = sorted(storage.to_url(pattern, p) for p in fs.glob(path))
    if not images:
        raise FileNotFoundError(f"no image matches {pattern}")
    return images


def model_arg(spec: str, work: str) -> str:
    """A ``--model`` value as a URL: a URL or path as given, else a file in ``WORK/models``
    (``knn-5`` and ``detector-knn-5.pt`` alike)."""
    from pipeline.train.classifier import model_url

    if "/" in spec:
        return spec
    return model_url(work, spec if spec.endswith(".pt") else f"{spec}.pt")
