"""Shared fixtures: a tiny generated dataset and a real S3 endpoint (moto) on 127.0.0.1."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.io.ray_env import START_ATTEMPTS, free_port
from pipeline.toyworld.generate import generate
from schemas.config import toyworld_config

# Ray Train's controller looks at its workers every 2 s, so each fit's start and end wait up
# to that long; the suite runs about thirty small fits. Set before any Ray instance starts
# (its processes, and the `lsda` commands the tests run, inherit it).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> str:
    """The test-size built-in dataset, generated once per session (read-only for tests)."""
    root = str(tmp_path_factory.mktemp("toyworld"))
    generate(root, toyworld_config("test", seed=3), workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on loopback, stopped by handle at the end of the session."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _S3_ENV}
    os.environ.update(
        LSDA_S3_ENDPOINT=endpoint,
        AWS_ACCESS_KEY_ID=TEST_KEY_ID,
        AWS_SECRET_ACCESS_KEY=TEST_SECRET,
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# Distinctive, so that a test can grep every output of an S3 run for them.
TEST_KEY_ID = "AKIALSDATEST7Q2W9XKE"
TEST_SECRET = "lsda-test-secret-3f9c1e7d5b2a48f6"
_S3_ENV = ("LSDA_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def make_bucket(endpoint: str) -> str:
    import boto3

    name = f"lsda-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh bucket per test; returns its s3:// URL."""
    return make_bucket(s3_server)


@pytest.fixture(scope="session")
def _ray_session(s3_server):
    """Shuts the shared local Ray instance down by handle at the end of the session."""
    import ray

    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_local(_ray_session):
    """One local Ray instance (2 CPUs) shared by the modules that use it: started on first
    use, after the S3 variables are set so that its workers inherit them, and again after a
    module that needed the process free of it (its own cluster) shut it down."""
    from pipeline.io.ray_env import start_local_ray

    if not _ray_session.is_initialized():
        start_local_ray(num_cpus=2, log_to_driver=False)
    return _ray_session


def smoke_config(shard_size: int = 4, workers: int = 1) -> str:
    """The toyworld config with a [quick] section small enough for the test-size world: the
    whole pipeline in about a minute, for tests of plumbing rather than of learning. Small
    shards make several per split (what fault tests need); one worker saves a process and
    the process group in each of the four fits (~6 CPU-s each; two workers are the quick
    run's, tests/pipeline/test_run.py)."""
    import yaml

    doc = yaml.safe_load(Path(__file__).parents[1].joinpath("configs/toyworld.yaml").read_text())
    doc["extract"]["shard_size"] = shard_size
    fit = {"workers": workers}
    doc["quick"] = {
        "train_cls": {"epochs": 2, **fit},
        "train_det": {"iterations": 20, "checkpoint_every": 10, **fit},
        "run": {"draw": 1, "actors": workers},
    }
    return yaml.safe_dump(doc)


def stop_group(proc: subprocess.Popen) -> None:
    """Kill what a driver started in its own session (``start_new_session=True``): the group
    is ours, its local Ray included."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def stop_and_time(proc: subprocess.Popen, sig: signal.Signals) -> tuple[float, str]:
    """Send ``sig``; the seconds until the driver exited, and its stderr."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return time.monotonic() - t0, err


EXPECTED_SKIP = "expected:"  # the reason of a skip that is by design (e.g. on a GPU machine)


def pytest_sessionfinish(session) -> None:
    """A skip that is not by design fails the run: a test that cannot run here says nothing,
    and a suite that passes by skipping hides it (an interrupt test once did, every time)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or session.exitstatus != 0:
        return
    unexpected = [
        r for r in reporter.stats.get("skipped", []) if EXPECTED_SKIP not in str(r.longrepr)
    ]
    if unexpected:
        names = ", ".join(r.nodeid for r in unexpected)
        reporter.write_line(f"unexpected skips (not marked '{EXPECTED_SKIP}'): {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items) -> None:
    """The slow modules first (the order pytest-xdist hands modules to its two processes), so
    that the last module to run is a short one, not an end-to-end run left on its own."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else 1)  # stable


@dataclass
class RayHead:
    address: str  # the job server, http://127.0.0.1:PORT
    env: dict  # what a client needs: the cluster's token, and the S3 settings
    logs: Path  # Ray's session logs
    gcs: str  # 127.0.0.1:PORT, what ray.init(address=...) joins


@pytest.fixture(scope="module")
def ray_head(s3_server):
    """``ray start --head`` on 127.0.0.1 with token authentication, as a cluster runs it: its
    environment holds the S3 credentials (a cluster's instance role), and ``python`` is this
    venv's. Stopped by its pid: SIGTERM drains the node and stops what it started. Ray waits
    a fixed 30 s for its raylet to register (docs/notes.md); a loaded machine can miss that,
    so a start that fails is tried again, as often as ``start_local_ray`` tries."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    for attempt in range(1, START_ATTEMPTS + 1):
        proc, tmp, gcs, address = _start_head(bin_dir, env)
        try:
            _wait_for_job_server(address, env["RAY_AUTH_TOKEN"], proc, f"{tmp}/head.log")
            break
        except (RuntimeError, TimeoutError) as e:
            stop_group(proc)  # what the failed start left: its own session, so ours to kill
            shutil.rmtree(tmp, ignore_errors=True)
            if attempt == START_ATTEMPTS:
                raise
            last = str(e).strip().splitlines()[-1]
            print(f"ray start --head, try {attempt} of {START_ATTEMPTS}: {last}")
    try:
        yield RayHead(address, env, Path(tmp), gcs)
    finally:
        _stop_head(proc, tmp)


def _start_head(bin_dir: str, env: dict) -> tuple[subprocess.Popen, str, str, str]:
    tmp = tempfile.mkdtemp(prefix="lsda-head-")  # short: Ray's socket paths live under it
    gcs, dashboard, client, agent = (free_port() for _ in range(4))
    cmd = [f"{bin_dir}/ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1",
           f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
           f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
           "--num-cpus=2", f"--temp-dir={tmp}"]  # fmt: skip
    with open(f"{tmp}/head.log", "wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, tmp, f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}"


def _stop_head(proc: subprocess.Popen, tmp: str) -> None:
    """SIGTERM drains the head; past a minute, its group goes as a failed start's does."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stop_group(proc)
    shutil.rmtree(tmp, ignore_errors=True)


def _wait_for_job_server(address: str, token: str, proc, log: str, timeout_s: float = 120) -> None:
    request = urllib.request.Request(
        f"{address}/api/version", headers={"Authorization": f"Bearer {token}"}
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited ({proc.returncode}): {Path(log).read_text()}")
        try:
            with urllib.request.urlopen(request, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"the job server at {address} did not answer in {timeout_s} s")
