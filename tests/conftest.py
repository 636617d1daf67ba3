"""Shared fixtures: a tiny generated dataset and a real S3 endpoint (moto) on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from pipeline.toyworld.generate import generate
from schemas.config import toyworld_config


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> str:
    """The test-size built-in dataset, generated once per session (read-only for tests)."""
    root = str(tmp_path_factory.mktemp("toyworld"))
    generate(root, toyworld_config("test", seed=3), workers=1, progress=False)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on loopback, stopped by handle at the end of the session."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _S3_ENV}
    os.environ.update(
        LSDA_S3_ENDPOINT=endpoint,
        AWS_ACCESS_KEY_ID="testing-key-id",
        AWS_SECRET_ACCESS_KEY="testing-secret",
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


_S3_ENV = ("LSDA_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh bucket per test; returns its s3:// URL."""
    import boto3

    name = f"lsda-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """One local Ray instance (2 CPUs) for the session, started after the S3 variables are set
    so that its workers inherit them; shut down by handle."""
    import ray

    from pipeline.ray_env import start_local_ray

    start_local_ray(num_cpus=2, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
