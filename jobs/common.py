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
    from pipeline.io.ray_env import RayStartError

    user = (ValueError, FileNotFoundError, NotADirectoryError, StaleWorkDir, yaml.YAMLError)
    return (*user, RayStartError)


# Commands that write under --work without holding it (``submit`` sends a command that
# takes the lock where it runs).
UNLOCKED = ("submit", "jobs", "toyworld", "check-data")


def run_stage(name: str, args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    """``run(args)`` holding the work dir's lock, with the user's errors as one line on
    stderr and exit code 2, a failed stage (a bug in a shard, too many bad inputs, storage
    still failing after the client's retries) as one line and exit code 1, and SIGINT /
    SIGTERM as one line and exit code 130 / 143."""
    from pipeline.failures import StageFailed, stop_signals
    from pipeline.io.lock import WorkDirBusy
    from pipeline.io.storage import is_io_error

    try:
        with stop_signals():
            apply_common(args)
            return _run_locked(name, args, run)
    except KeyboardInterrupt as exc:
        return _stopped(name, args, exc)
    except (*user_errors(), WorkDirBusy) as exc:
        return _one_line(name, args, exc, 2)
    except StageFailed as exc:
        return _one_line(name, args, exc, 1)
    except Exception as exc:
        if not is_io_error(exc):
            raise
        return _one_line(name, args, exc, 1, " (storage error: nothing lost; run it again)")


def _run_locked(name: str, args: argparse.Namespace, run: Callable) -> int:
    from pipeline.io.lock import WorkLock, describe
    from pipeline.io.storage import remove_temp_files

    work = getattr(args, "work", None)
    if not work or name in UNLOCKED:
        return run(args)
    with WorkLock(work, name) as lock:
        if lock.previous:
            removed = remove_temp_files(work)
            print(
                f"lsda {name}: took over the lock of {describe(lock.previous)}, which is no "
                f"longer running; {removed} temporary files it left removed",
                file=sys.stderr,
            )
        return run(args)


def _stopped(name: str, args: argparse.Namespace, exc: KeyboardInterrupt) -> int:
    """Stop Ray's work (its local instance, or this driver's tasks on a cluster), clear what
    writers left half-done, and say how to go on."""
    import signal

    from pipeline.failures import stop_signal

    signum = stop_signal(exc)
    try:
        import ray

        ray.shutdown()
        if work := getattr(args, "work", None):
            from pipeline.io.storage import remove_temp_files

            remove_temp_files(work)
    finally:
        print(
            f"lsda {name}: stopped by {signal.Signals(signum).name}; finished work is kept, "
            "run the same command to go on",
            file=sys.stderr,
            flush=True,
        )
    return 128 + signum


def _one_line(name: str, args, exc: BaseException, code: int, hint: str = "") -> int:
    if getattr(args, "debug", False):
        raise exc
    lines = [x for x in str(exc).strip().splitlines() if x.strip()] or [type(exc).__name__]
    # an error raised in a Ray task arrives with its remote traceback: its last line names it
    message = lines[0] if len(lines) == 1 else lines[-1].strip()
    print(f"lsda {name}: error: {message}{hint} (--debug for the traceback)", file=sys.stderr)
    return code


def add_max_bad(parser: argparse.ArgumentParser) -> None:
    from pipeline.failures import DEFAULT_MAX_BAD

    parser.add_argument(
        "--max-bad",
        type=float,
        default=DEFAULT_MAX_BAD,
        metavar="SHARE",
        help="fail a stage when more than this share of its inputs is quarantined "
        f"(default {DEFAULT_MAX_BAD}; all of them always fails)",
    )


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
    from schemas.config import AUTO_COUNTS, count_or_auto

    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction)
        elif isinstance(f.default, int | float | str):
            kind = count_or_auto if f.name in AUTO_COUNTS else type(f.default)
            parser.add_argument(flag, dest=f.name, type=kind, metavar=f.name.upper())


def add_config(
    parser: argparse.ArgumentParser, *sections: str, skip: tuple = (), help: str = ""
) -> None:
    """``--config`` and one option per field of each of its ``sections`` (see RunConfig)."""
    from schemas.config import RunConfig

    sets = f"; its {', '.join(f'[{s}]' for s in sections)} set the defaults" if sections else ""
    parser.add_argument(
        "--config",
        help=f"a shipped config (toyworld, ilsvrc13, imagenet7k) or a YAML path/URL{sets}{help}",
    )
    for section in sections:
        add_config_arguments(parser, type(getattr(RunConfig(), section)), skip)


def config_from_args(args: argparse.Namespace, section: str):
    """One section of the ``--config`` file (read once per command), the command line on top."""
    from schemas.config import load_config

    if getattr(args, "loaded_config", None) is None:
        args.loaded_config = load_config(getattr(args, "config", None))
    cfg = getattr(args.loaded_config, section)
    names = [f.name for f in dataclasses.fields(cfg)]
    overrides = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return dataclasses.replace(cfg, **overrides)


def add_scoring_arguments(parser: argparse.ArgumentParser, post: str) -> None:
    """``detect`` and ``score-vocab``: the device options, post-processing (``post``: the
    config section), and a config for the proposals."""
    add_config(
        parser,
        "scoring",
        post,
        help="; its [extract] section the selective search for --images (default: the "
        "settings WORK's det-train split was extracted with)",
    )


def scoring_from_args(args: argparse.Namespace):
    """(ScoringConfig, the proposal settings for images without stored proposals)."""
    from pipeline.extract.stage import extracted_with
    from schemas.config import ExtractConfig

    scoring = config_from_args(args, "scoring")
    if args.config:
        return scoring, config_from_args(args, "extract")
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
    from pipeline.workdir import WorkDir

    return spec if "/" in spec else WorkDir(work).model(spec)
