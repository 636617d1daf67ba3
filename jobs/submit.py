"""``lsda submit``: run a stage or a whole ``run`` on a Ray cluster as a Ray job."""

from __future__ import annotations

import argparse
import sys

from jobs.common import add_address
from pipeline.io.submission import client, exit_code, failure_line, follow, project_root, submit

DESCRIPTION = "submit an lsda command to a Ray cluster as a Ray job and follow its logs"
NOT_SUBMITTABLE = ("submit", "jobs")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_address(p)
    p.add_argument(
        "--working-dir",
        default=project_root(),
        help="code to upload with the job (default: this checkout; 'none' to use the package "
        "installed in the cluster's image)",
    )
    p.add_argument("--no-wait", action="store_true", help="print the job id and return")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then an lsda command")


def command_of(args: argparse.Namespace) -> list[str]:
    """The lsda command after ``--``, checked here so that a typo fails before submitting."""
    from jobs.cli import build_parser

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or command[0] in NOT_SUBMITTABLE:
        raise SystemExit("lsda submit: give the command to run after --, e.g. -- run --data ...")
    build_parser().parse_args(command)  # exits with argparse's message on a bad command
    return command


def run(args: argparse.Namespace) -> int:
    command = command_of(args)
    working_dir = None if args.working_dir in (None, "none") else args.working_dir
    job_client = client(args.address)
    job_id = submit(job_client, command, working_dir)
    print(f"submitted {job_id}", flush=True)
    if args.no_wait:
        return 0
    try:
        status = follow(job_client, job_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; the job goes on (lsda jobs stop {job_id})", file=sys.stderr)
        return 130
    if status != "SUCCEEDED":
        print(f"job {job_id} {status}: {failure_line(job_client, job_id)}", file=sys.stderr)
    return exit_code(status)


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
