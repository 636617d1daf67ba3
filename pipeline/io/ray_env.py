"""Starting or joining Ray, and what every Ray worker must inherit from the driver."""

from __future__ import annotations

import os

from pipeline.io.storage import ENDPOINT_VARS

# Forwarded to workers so that s3:// URLs resolve the same way there. Credentials are not:
# workers get them from their own environment / instance role, never from our job specs.
FORWARDED_VARS = ENDPOINT_VARS


# Quieter Ray, unless the user set these: Ray Data logs INFO lines for every dataset it runs
# (console and its log file alike), and Ray Train's print patch echoes every print of a
# training worker a second time through the root logger (our progress lines showed twice).
QUIET_DEFAULTS = {"RAY_DATA_LOG_LEVEL": "WARNING", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}


def quiet_ray_defaults() -> None:
    """Set QUIET_DEFAULTS where unset; call before ``ray.data`` is first imported."""
    for k, v in QUIET_DEFAULTS.items():
        os.environ.setdefault(k, v)


def worker_env() -> dict[str, str]:
    quiet_ray_defaults()
    return {k: os.environ[k] for k in (*FORWARDED_VARS, *QUIET_DEFAULTS) if os.environ.get(k)}


def start_local_ray(num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """A local Ray instance bound to 127.0.0.1 only (tests, benchmarks, laptops)."""
    import ray

    env = worker_env()
    ray.init(
        num_cpus=num_cpus,
        # The dashboard serves the State API that Ray Train's placement-group cleaner polls
        # (without it, a warning every few seconds); on loopback only, it costs no start time.
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": env} if env else None,
        log_to_driver=log_to_driver,
    )


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (or RAY_ADDRESS), else start a local instance."""
    import ray

    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        # In a submitted job (lsda submit), Ray merges this runtime env into the job's and
        # refuses keys set in both unless told that the driver's win: they should, since a
        # flag such as --s3-endpoint on the job's command line is newer than the job's env.
        os.environ.setdefault("RAY_OVERRIDE_JOB_RUNTIME_ENV", "1")
        ray.init(address=address, runtime_env={"env_vars": worker_env()} if worker_env() else None)
    else:
        start_local_ray(num_cpus)


def cpus_per_consumer(consumers: int) -> float:
    """CPUs for each of ``consumers`` long-lived actors or trainers, leaving one CPU free for
    the Ray Data tasks (reads, decoding) that feed them: with every CPU held by consumers the
    input pipeline is never scheduled and the job waits forever."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 1)
    return max(0.25, min(1.0, (cpus - 1) / max(consumers, 1)))


def remote_args() -> dict:
    """Per-task options for Ray Data operators: the forwarded environment."""
    env = worker_env()
    return {"runtime_env": {"env_vars": env}} if env else {}
