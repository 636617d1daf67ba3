"""Starting or joining Ray, and what every Ray worker must inherit from the driver."""

from __future__ import annotations

import atexit
import logging
import os
import re
import socket
import threading
import time

from pipeline.io.storage import ENDPOINT_VARS, S3_CLIENT_VARS

# Forwarded to workers so that s3:// URLs resolve (and time out) the same way there.
# Credentials are not: workers get them from their own environment / instance role, never
# from our job specs.
FORWARDED_VARS = (*ENDPOINT_VARS, *S3_CLIENT_VARS)


# Quieter Ray, unless the user set these: Ray Data logs INFO lines for every dataset it runs
# (console and its log file alike), and Ray Train's print patch echoes every print of a
# training worker a second time through the root logger (our progress lines showed twice).
QUIET_DEFAULTS = {"RAY_DATA_LOG_LEVEL": "WARNING", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}

# Ray ends idle worker processes past one per CPU after 1 s; the training workers' read tasks
# (one placement group each, pipeline/train/resources.py) then start a new process per pass
# (seconds of imports each): 1,800-2,000 against 970 images/s (`lsda train-cls`, demo world, 2
# workers on 2 cores; 13 worker processes started against 24).
LOCAL_SYSTEM_CONFIG = {"idle_worker_killing_time_threshold_ms": 30_000}

START_ATTEMPTS = 3  # a loaded machine can miss Ray's fixed 30 s node start-up wait once

# Output that is Ray's own business, kept off the console (its log files have it): its C++
# core's log lines (core_worker.cc warns about the constructor arguments of every restartable
# actor: Ray Train's PreemptionWatcher, Ray Data's map workers), Ray Data's notice that
# the progress bars we turned off are off, and the raylet's notice that it started more than
# 4 processes per CPU at once (a fit's workers, its controller and its readers' first tasks
# start together: 0.5-CPU workers and read tasks make that 8 on 2 cores).
RAY_INTERNAL_LINE = re.compile(
    r"^\[\d{4}-\d\d-\d\d [\d:,.]+ [DIWEF] \d+ \d+\] \S+\.cc:\d+: |.*Progress bars disabled"
    r"|^WARNING: \d+ PYTHON worker processes have been started on node"
)
RAW_CONSOLE_VAR = "LSDA_RAW_CONSOLE"  # "1": workers' output unfiltered (debugging, tests)
QUIET_LOGGERS = (
    # a new local instance enables token authentication (as it should) and says so each time
    "ray._private.authentication.authentication_token_setup",
    "ray.data._internal.progress",
)


class RayStartError(RuntimeError):
    """Ray could not be started or joined."""


def quiet_ray_defaults() -> None:
    """Set QUIET_DEFAULTS where unset; call before ``ray.data`` is first imported."""
    for k, v in QUIET_DEFAULTS.items():
        os.environ.setdefault(k, v)


def worker_env() -> dict[str, str]:
    quiet_ray_defaults()
    return {k: os.environ[k] for k in (*FORWARDED_VARS, *QUIET_DEFAULTS) if os.environ.get(k)}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local_ray(num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """A local Ray instance bound to 127.0.0.1 only (tests, benchmarks, laptops), retried on a
    slow start. Always a new one (``address="local"``): without it, ``ray.init`` joins the
    last cluster that ``ray start`` (or ``ray.cluster_utils.Cluster``) recorded on this
    machine. Its workers find it by address: with another local instance on the machine,
    Ray's own look-ups (Ray Train's placement-group cleaner) would otherwise fail with "found
    multiple active Ray instances"."""
    import ray

    _quiet_loggers()
    last: Exception | None = None
    for attempt in range(START_ATTEMPTS):
        port = free_port()  # the dashboard serves the State API: ours, by address
        env = {**worker_env(), "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}
        try:
            ray.init(
                address="local",
                num_cpus=num_cpus,
                # The dashboard serves the State API that Ray Train's placement-group cleaner
                # polls (without it, a warning every few seconds); on loopback only. None,
                # not True: it starts all the same, but one that cannot (a package missing
                # on a GPU image) is a logged error, not a failed start tried three times.
                include_dashboard=None,
                dashboard_host="127.0.0.1",
                dashboard_port=port,
                _node_ip_address="127.0.0.1",
                runtime_env={"env_vars": env},
                log_to_driver=log_to_driver,
                logging_level=logging.WARNING,  # not "Started a local Ray instance"
                _system_config=LOCAL_SYSTEM_CONFIG,
            )
            break
        except Exception as exc:  # Ray raises bare Exception on a start-up timeout
            last = exc
            ray.shutdown()  # stops what this attempt started, by handle
            time.sleep(2 * (attempt + 1))
    else:
        raise RayStartError(
            f"Ray did not start in {START_ATTEMPTS} tries ({last}); the machine may be "
            "overloaded: retry, or start Ray with `ray start --head` and pass its address "
            "in RAY_ADDRESS"
        ) from last
    if log_to_driver:  # a console: the CLI's
        _filter_console()


def _quiet_loggers() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def _filter_console() -> None:
    """Our lines only on the driver's console (unless ``LSDA_RAW_CONSOLE=1``): a terminal's,
    or a submitted job's, whose logs ``lsda submit`` and ``lsda jobs logs`` show."""
    if os.environ.get(RAW_CONSOLE_VAR) != "1":
        _filter_worker_output()
        _filter_driver_stderr()


def _filter_worker_output() -> None:
    """Workers' output on the console without Ray's internal log lines; our own progress
    lines (stdout) without the ``(RayTrainWorker pid=...)`` prefix. Two paths print there:
    the log dispatcher (workers' output) and the driver's error listener, which prints the
    raylet's messages ("N PYTHON worker processes have been started ...") by calling
    ``print_to_stdstream`` by name; both go through the filtered one."""
    from ray._private import worker as ray_worker

    if getattr(ray_worker.print_to_stdstream, "lsda_filtered", False):
        return
    original = ray_worker.print_to_stdstream

    def filtered(data: dict, ignore_prefix: bool) -> None:
        lines = [x for x in data["lines"] if not RAY_INTERNAL_LINE.match(x)]
        if lines:
            original({**data, "lines": lines}, ignore_prefix)

    filtered.lsda_filtered = True
    ray_worker.print_to_stdstream = filtered
    dispatcher = ray_worker.global_worker_stdstream_dispatcher
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", lambda data: filtered(data, not data["is_err"]))


def _filter_driver_stderr() -> None:
    """The driver's own C++ core writes its log lines straight to file descriptor 2, past any
    Python logging: route fd 2 through a pipe that drops them (Ray's session log
    ``python-core-driver-*.log`` keeps them). Restored at exit, after the last line is out."""
    if getattr(_filter_driver_stderr, "installed", False):
        return
    _filter_driver_stderr.installed = True
    sys_stderr = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump() -> None:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            for line in iter(pipe.readline, b""):
                if not RAY_INTERNAL_LINE.match(line.decode(errors="replace")):
                    os.write(sys_stderr, line)

    thread = threading.Thread(target=pump, name="lsda-stderr", daemon=True)
    thread.start()

    def restore() -> None:
        import sys

        sys.stderr.flush()
        os.dup2(sys_stderr, 2)  # closes our end of the pipe: the pump drains it and stops
        thread.join(timeout=2)

    atexit.register(restore)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (or RAY_ADDRESS), else start a local instance; once
    per process, so that ``lsda run`` starts Ray once for all its stages."""
    import ray

    if ray.is_initialized():
        return
    try:
        _init_ray(address, num_cpus)
    finally:
        from pipeline.failures import rearm_stop_signals

        rearm_stop_signals()


def _init_ray(address: str | None, num_cpus: int | None) -> None:
    import ray

    if address or os.environ.get("RAY_ADDRESS"):
        # In a submitted job (lsda submit), Ray merges this runtime env into the job's and
        # refuses keys set in both unless told that the driver's win: they should, since a
        # flag such as --s3-endpoint on the job's command line is newer than the job's env.
        os.environ.setdefault("RAY_OVERRIDE_JOB_RUNTIME_ENV", "1")
        _quiet_loggers()
        env = {**worker_env(), **joined_address_env(address or os.environ["RAY_ADDRESS"])}
        ray.init(
            address=address,
            runtime_env={"env_vars": env} if env else None,
            logging_level=logging.WARNING,  # not "Connecting to existing Ray cluster at ..."
        )
        _filter_console()
    else:
        start_local_ray(num_cpus)


def joined_address_env(address: str) -> dict[str, str]:
    """The joined cluster's GCS address (host:port, as a job's driver gets it) for its workers:
    Ray Train's placement-group cleaner finds the State API from it. Without it, on a machine
    with more than one Ray instance, the cleaner guessed, picked another one and died with a
    traceback in the job's logs."""
    if "://" in address or ":" not in address:  # ray://, http:// or "auto": Ray resolves them
        return {}
    return {"RAY_ADDRESS": address}


def cpus_per_consumer(consumers: int) -> float:
    """CPUs for each of ``consumers`` long-lived actors on this cluster (``consumer_cpus``)."""
    import ray

    return consumer_cpus(ray.cluster_resources().get("CPU", 1), consumers)


def consumer_cpus(cpus: float, consumers: int) -> float:
    """CPUs for each of ``consumers`` long-lived actors or trainers out of ``cpus``, leaving
    one CPU free for the Ray Data tasks (reads, decoding) that feed them: with every CPU held
    by consumers the input pipeline is never scheduled and the job waits forever."""
    return max(0.25, min(1.0, (cpus - 1) / max(consumers, 1)))


def remote_args() -> dict:
    """Per-task options for Ray Data operators: the forwarded environment."""
    env = worker_env()
    return {"runtime_env": {"env_vars": env}} if env else {}
