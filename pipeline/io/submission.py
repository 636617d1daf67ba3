"""Ray Jobs: send an ``lsda`` command to a cluster, follow its logs, report how it ended.

The job runs ``python -m jobs.cli <command>`` on the cluster with this checkout as its working
dir (or the package installed in the cluster's image). Its runtime environment carries only
non-secret settings (the S3 endpoint, quieter Ray logging): credentials come from the
cluster's own environment or instance role, so they never appear in the job's spec, metadata
or logs. Token authentication is Ray's: the client sends the token from ``RAY_AUTH_TOKEN`` or
``~/.ray/auth_token`` when ``RAY_AUTH_MODE=token``; nothing here turns it off.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import TextIO

from pipeline.io.ray_env import worker_env

# Never uploaded with the working dir: outputs and caches (Ray already leaves out .git, .venv
# and what .gitignore names).
EXCLUDES = ["demo", "**/__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info"]
EXIT_CODES = {"FAILED": 1, "STOPPED": 2}  # any other status: 0


def project_root() -> str | None:
    """This checkout, when running from one (the folder holding ``pyproject.toml``)."""
    root = Path(__file__).resolve().parents[2]
    return str(root) if (root / "pyproject.toml").exists() else None


def client(address: str | None):
    """A job client for ``address`` (else ``RAY_ADDRESS``), failing with a clear message."""
    import logging

    from ray.job_submission import JobSubmissionClient

    logging.getLogger("ray").setLevel(logging.WARNING)  # one INFO line per packaged file
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise SystemExit("no cluster address: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # connection refused, 401/403 without the cluster's token, ...
        raise SystemExit(f"cannot reach the Ray job server at {address}: {exc}") from exc


def runtime_env(working_dir: str | None) -> dict:
    env: dict = {"env_vars": worker_env()}
    if working_dir:
        env.update(working_dir=working_dir, excludes=EXCLUDES)
    return env


def submit(job_client, command: list[str], working_dir: str | None) -> str:
    """Submit ``lsda <command>``; returns the job id."""
    stage = command[0] if command else "job"
    job_id = f"lsda-{stage}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    return job_client.submit_job(
        entrypoint=f"python -m jobs.cli {shlex.join(command)}",
        submission_id=job_id,
        runtime_env=runtime_env(working_dir),
        metadata={"lsda": shlex.join(command)},
    )


def follow(job_client, job_id: str, out: TextIO = sys.stdout) -> str:
    """Print the job's logs as they come until it ends; returns its final status."""

    async def tail() -> None:
        async for chunk in job_client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    try:
        asyncio.run(tail())
    except RuntimeError as exc:  # the log stream dropped: the status below still tells
        print(f"(log stream ended: {exc})", file=sys.stderr)
    return wait(job_client, job_id)


def wait(job_client, job_id: str, poll_s: float = 1.0) -> str:
    while not (status := job_client.get_job_status(job_id)).is_terminal():
        time.sleep(poll_s)
    return str(status.value)


def failure_line(job_client, job_id: str) -> str:
    """The first line of the job's message (the rest repeats the logs already printed)."""
    message = describe(job_client, job_id)["message"] or ""
    return message.splitlines()[0] if message else ""


def describe(job_client, job_id: str) -> dict:
    info = job_client.get_job_info(job_id)
    return {
        "job_id": job_id,
        "status": str(info.status.value),
        "message": info.message,
        "entrypoint": info.entrypoint,
        "start_time": info.start_time,
        "end_time": info.end_time,
    }


def exit_code(status: str) -> int:
    return EXIT_CODES.get(status, 0)
