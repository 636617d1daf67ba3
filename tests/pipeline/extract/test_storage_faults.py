"""Transient S3 faults on every kind of storage operation an extraction makes: retried by the
client, or left pending for the next run; never an input lost or quarantined for good.

Each run is a real driver process (its own local Ray) talking to moto through the faulty
proxy (``tests/s3_faults.py``), with a 3 s read timeout so that a 30 s stall is given up
on quickly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.data.det_reader import read_det_split
from pipeline.extract.stage import read_manifest
from pipeline.io import storage
from pipeline.toyworld.generate import generate
from pipeline.workdir import WorkDir
from schemas.config import toyworld_config
from tests.conftest import make_bucket
from tests.s3_faults import OPERATIONS, Faults, FaultyS3

TIMEOUTS = {"LSDA_S3_READ_TIMEOUT": "3", "LSDA_S3_CONNECT_TIMEOUT": "3"}


@pytest.fixture(scope="module")
def s3_world(s3_server) -> str:
    """A small world with its classification images in tars (ranged reads), on moto."""
    data = f"{make_bucket(s3_server)}/data"
    cfg = toyworld_config("test", seed=3, det_categories=4, val1_scenes=4, cls_format="tars")
    generate(data, cfg, progress=False)
    return data


def extract(data: str, work: str, endpoint: str, max_bad: float = 0.05) -> dict:
    env = {**os.environ, **TIMEOUTS, "LSDA_S3_ENDPOINT": endpoint, "RAY_ADDRESS": ""}
    cmd = [sys.executable, "-m", "tests.fault_driver", data, work, str(max_bad)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def expected_ids(data: str) -> dict[str, set[str]]:
    from pipeline.data.cls_reader import read_cls_images

    cls = read_cls_images(data).images
    return {
        "val1": {a.image_id for a in read_det_split(data, "val1").annotations},
        "cls": {f"{i.wnid}/{i.name}" for i in cls},
    }


@pytest.mark.parametrize("kind", ["503", "reset", "stall"])
def test_transient_faults_are_retried(kind, s3_world, s3_server):
    work = f"{make_bucket(s3_server)}/work"
    with FaultyS3(s3_server, faults=Faults(kind)) as proxy:
        got = extract(s3_world, work, proxy.endpoint)
        injected = dict(proxy.injected)
    print(f"{kind}: faults injected per operation {injected}")
    assert set(injected) == set(OPERATIONS), injected  # each kind of operation was hit
    for split, ids in expected_ids(s3_world).items():
        summary = got[split]
        assert "error" not in summary, summary
        assert summary["done"] == len(ids) and summary["quarantined"] == 0, summary
        manifest = read_manifest(WorkDir(work).extract(split)).column("image_id").to_pylist()
        assert sorted(manifest) == sorted(ids)  # every image once


def test_an_unreadable_annotation_is_pending_not_gone(s3_world, s3_server):
    """One XML GET refused in the first run: its image is quarantined as a read error (the
    split's images and fingerprint unchanged), and the next run reads it in."""
    work = f"{make_bucket(s3_server)}/work"
    xml = sorted(a.annotation_url for a in read_det_split(s3_world, "val1").annotations)[2]
    with FaultyS3(s3_server, {xml.removeprefix("s3:/")}) as proxy:
        first = extract(s3_world, work, proxy.endpoint, max_bad=0.5)["val1"]
    assert first["done"] == 3 and first["quarantine_reasons"] == {"read-error": 1}, first
    sdir = WorkDir(work).extract("val1")
    rows = {r["image_id"]: r for r in read_manifest(sdir).to_pylist()}
    assert len(rows) == 4 and storage.stem(xml) in rows
    assert xml in rows[storage.stem(xml)]["reason"]
    second = extract(s3_world, work, os.environ["LSDA_S3_ENDPOINT"])["val1"]
    assert second["done"] == 4 and second["retried_images"] == 1, second
