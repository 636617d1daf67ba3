"""Several nodes on one machine (``ray.cluster_utils.Cluster``): extraction spreads over them
and survives losing one; a training worker killed midway resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.extract.stage import read_manifest, run_extract
from pipeline.toyworld.generate import generate
from pipeline.workdir import WorkDir
from schemas.config import load_config, toyworld_config

# No node_ip_address: given 127.0.0.1, Ray 2.60's nodes still advertise the host's address
# for the GCS and the driver never connects (13 min, then ConnectionError).
NODE = {"num_cpus": 1}


@pytest.fixture(scope="module")
def cluster(s3_server):
    """A head and two worker nodes of one CPU each; the driver joins the head."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the process joins this cluster, not the tests' shared local instance
    c = Cluster(
        initialize_head=True,
        head_node_args={**NODE, "dashboard_host": "127.0.0.1", "include_dashboard": True},
    )
    try:
        workers = [c.add_node(**NODE) for _ in range(2)]
        c.connect()
        yield c, workers
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("cluster-world"))
    generate(root, toyworld_config("test", seed=5, val2_scenes=24), workers=1, progress=False)
    return root


def _in_background(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def target():
        try:
            out["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test thread
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout_s} s")
        time.sleep(0.1)


def _finished(thread, out, timeout_s: float):
    thread.join(timeout_s)
    assert not thread.is_alive(), f"still running after {timeout_s} s"
    if "error" in out:
        raise out["error"]
    return out["result"]


def _registered_checkpoints(run_dir: Path) -> int:
    """Checkpoints Ray Train's controller knows of (a folder alone is not enough: a worker
    killed before the controller registered it restarts from scratch)."""
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):
        return 0
    return len(snapshot.get("checkpoint_results", []))


def _nodes_so_far(sdir: str) -> set[str]:
    """Nodes named in the manifest parts of the shards finished so far."""
    nodes: set[str] = set()
    for part in Path(sdir, "manifest").glob("*.parquet"):
        try:
            nodes.update(pq.read_table(part, columns=["node"]).column("node").to_pylist())
        except OSError:  # being replaced right now
            pass
    return nodes


def test_extraction_spreads_over_nodes_and_survives_losing_one(cluster, world, tmp_path):
    c, workers = cluster
    cfg = replace(load_config("configs/toyworld.yaml").extract, shard_size=1)
    work = str(tmp_path / "work")
    done_dir = Path(WorkDir(work).extract("val2"), "_done")
    t0 = time.time()
    thread, out = _in_background(run_extract, world, work, "val2", cfg, progress=False)

    def worked() -> list:
        ran = _nodes_so_far(WorkDir(work).extract("val2"))
        return [w for w in workers if w.node_id in ran]

    def midway() -> bool:
        return len(list(done_dir.glob("*.json"))) >= 6 and bool(worked())

    _wait_for(midway, 180, "6 shards finished, one of them on a worker node")
    lost = worked()[0]
    finished_before = len(list(done_dir.glob("*.json")))
    assert finished_before < 24  # midway
    c.remove_node(lost)
    summary = _finished(thread, out, 300)
    print(f"extraction over 3 nodes, one removed after {finished_before}/24 shards: "
          f"{time.time() - t0:.1f} s")  # fmt: skip
    manifest = read_manifest(WorkDir(work).extract("val2")).to_pylist()
    ids = [r["image_id"] for r in manifest]
    assert len(ids) == len(set(ids)) == 24 and summary["done"] == 24
    nodes = {r["node"] for r in manifest}
    assert len(nodes) >= 2 and lost.node_id in nodes  # it worked before it went away
    parts = sorted(Path(WorkDir(work).extract("val2"), "proposals").glob("*.parquet"))
    assert sum(pq.read_metadata(p).num_rows for p in parts) == 24  # no duplicate outputs
    workers[workers.index(lost)] = c.add_node(**NODE)  # three nodes again for the next test


def test_a_killed_training_worker_resumes_from_its_checkpoint(cluster, world, tmp_path):
    import ray.util.state

    from pipeline.train.classifier import run_train_cls

    work = str(tmp_path / "work")
    ext = load_config("configs/toyworld.yaml").extract
    run_extract(world, work, "cls", ext, progress=False)
    cfg = replace(load_config("configs/toyworld.yaml").train_cls, epochs=12, max_failures=2)
    t0 = time.time()
    thread, out = _in_background(run_train_cls, world, work, cfg)
    runs = Path(work, "train", "cls")
    _wait_for(lambda: _registered_checkpoints(runs) >= 1, 240, "a registered checkpoint")
    (victim, *_) = ray.util.state.list_actors(
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")]
    )
    os.kill(victim.pid, signal.SIGKILL)
    result = _finished(thread, out, 400)
    print(f"train-cls with a worker killed: {time.time() - t0:.1f} s, "
          f"resumed from epoch {result['resumed_from']}")  # fmt: skip
    assert result["epoch"] == 12 and result["resumed_from"] >= 1
