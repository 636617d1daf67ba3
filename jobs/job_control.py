"""``lsda jobs status|logs|stop ID``: look after jobs sent with ``lsda submit``."""

from __future__ import annotations

import argparse
import json

from jobs.common import add_address
from pipeline.io.submission import client, describe, exit_code, follow

DESCRIPTION = "status, logs or stop of a job sent with lsda submit"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("status", "logs", "stop", "list"))
    p.add_argument("job_id", nargs="?", help="the id printed by lsda submit (not for list)")
    add_address(p)
    p.add_argument("--follow", action="store_true", help="logs: follow until the job ends")


def run(args: argparse.Namespace) -> int:
    job_client = client(args.address)
    if args.action == "list":
        for job in job_client.list_jobs():
            print(f"{job.submission_id or job.job_id}\t{job.status.value}\t{job.entrypoint}")
        return 0
    if not args.job_id:
        raise SystemExit(f"lsda jobs {args.action}: give the job id")
    if args.action == "status":
        info = describe(job_client, args.job_id)
        print(json.dumps(info, indent=1))
        return exit_code(info["status"])
    if args.action == "stop":
        stopped = job_client.stop_job(args.job_id)
        print(f"{args.job_id}: {'stop requested' if stopped else 'already ended'}")
        return 0
    if args.follow:
        return exit_code(follow(job_client, args.job_id))
    print(job_client.get_job_logs(args.job_id), end="")
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
