import os
import subprocess
import sys

import pytest

from pipeline.io.ray_env import RAY_INTERNAL_LINE, joined_address_env

CORE_LINE = (
    "[2026-11-26 21:08:15,009 E 10243 10243] core_worker.cc:2465: Actor with class name: "
    "'PreemptionWatcher' and ID: '44ce' has constructor arguments in the object store"
)

STARTS = (
    "WARNING: 8 PYTHON worker processes have been started on node: db38 with address: "
    "127.0.0.1, which is 4x the maximum expected startup concurrency (2)."
)


def test_ray_internal_lines_are_told_from_ours():
    assert RAY_INTERNAL_LINE.match(CORE_LINE)
    notice = "2026-11-26 20:49:11,513\tWARNING __init__.py:28 -- Progress bars disabled. To..."
    assert RAY_INTERNAL_LINE.match(notice)
    assert RAY_INTERNAL_LINE.match(STARTS)
    for ours in (
        "train-cls epoch 1/16: loss 2.485, held-out accuracy 0.000, 20 images/s",
        "lsda run: error: no map_det.txt (--debug for the traceback)",
        "Traceback (most recent call last):",
    ):
        assert not RAY_INTERNAL_LINE.match(ours)


def test_the_raylets_messages_to_the_driver_are_filtered_too():
    """The raylet's warnings reach the driver as error messages, printed by Ray's error
    listener through ``print_to_stdstream`` (not the log dispatcher): filtered the same."""
    code = (
        "from ray._private import worker\n"
        "from pipeline.io.ray_env import _filter_worker_output\n"
        "_filter_worker_output()\n"
        "_filter_worker_output()  # twice: still one filter\n"
        f"lines = [{STARTS!r}, 'ours']\n"
        "worker.print_to_stdstream({'lines': lines, 'pid': 'raylet', 'is_err': False}, False)\n"
        "worker.stdout_deduplicator.flush()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    printed = out.stdout.splitlines()
    assert len(printed) == 1 and printed[0].endswith(" ours"), printed


def test_the_driver_stderr_filter_drops_core_lines_and_keeps_the_rest_to_the_end():
    """Written straight to file descriptor 2, as Ray's C++ core does; our last line, written
    just before exit, still reaches the console."""
    code = (
        "import os, sys\n"
        "from pipeline.io.ray_env import _filter_driver_stderr\n"
        "_filter_driver_stderr()\n"
        f"os.write(2, {CORE_LINE!r}.encode() + b'\\n')\n"
        "print('first line of ours', file=sys.stderr)\n"
        f"os.write(2, {CORE_LINE!r}.encode() + b'\\n')\n"
        "print('last line of ours', file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stderr.splitlines() == ["first line of ours", "last line of ours"]


def test_a_slow_start_is_retried_then_named(monkeypatch):
    """Ray's node start-up has a fixed 30 s wait: a loaded machine can miss it once."""
    import ray

    from pipeline.io import ray_env

    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        if len(calls) < 3:
            raise Exception("The current node timed out during startup.")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray_env.time, "sleep", lambda s: None)
    ray_env.start_local_ray(num_cpus=1, log_to_driver=False)
    assert len(calls) == 3
    env = calls[-1]["runtime_env"]["env_vars"]
    assert env["RAY_API_SERVER_ADDRESS"] == f"http://127.0.0.1:{calls[-1]['dashboard_port']}"
    assert calls[-1]["_node_ip_address"] == "127.0.0.1"

    def never(**kwargs):
        raise Exception("The current node timed out during startup.")

    monkeypatch.setattr(ray, "init", never)
    with pytest.raises(ray_env.RayStartError, match="did not start in 3 tries.*timed out"):
        ray_env.start_local_ray(num_cpus=1, log_to_driver=False)


def test_a_local_instance_is_new_even_where_ray_start_recorded_a_cluster():
    """``ray.init()`` without an address joins the last cluster that ``ray start`` (or
    ``ray.cluster_utils.Cluster``) recorded on the machine; our local instance must be a new
    one all the same (it was not: `lsda extract` beside the cluster test failed to start)."""
    code = (
        "import ray, ray._private.services as services\n"
        "services.find_bootstrap_address = lambda temp_dir=None: '127.0.0.1:9'  # recorded\n"
        "from pipeline.io.ray_env import start_local_ray\n"
        "start_local_ray(num_cpus=1, log_to_driver=False)\n"
        "print('cpus', ray.cluster_resources()['CPU'])\n"
        "ray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0 and "cpus 1.0" in out.stdout, out.stderr[-2000:]


def test_a_joined_clusters_workers_get_its_gcs_address():
    assert joined_address_env("127.0.0.1:6379") == {"RAY_ADDRESS": "127.0.0.1:6379"}
    for resolved_by_ray in ("auto", "ray://head:10001", "http://head:8265"):
        assert joined_address_env(resolved_by_ray) == {}
