"""The same seed gives the same numbers, whatever else runs on the machine: the tests that
rely on measured figures need it, and so does anyone comparing two runs."""

import json
import subprocess
import sys

import pytest

from pipeline.io.ray_env import RAY_INTERNAL_LINE
from tests.conftest import smoke_config

pytestmark = pytest.mark.slow
NOISE = (
    "core_worker.cc",
    "Started a local Ray instance",
    "Token authentication",
    "Progress bars disabled",
    "multiple active Ray instances",
    "PlacementGroupCleaner",
    "PreemptionWatcher",
    "PYTHON worker processes have been started",
)


def test_two_runs_at_once_give_the_same_rows_and_keep_ray_quiet(tiny_world, tmp_path):
    """``lsda run`` twice at the same time on the same dataset and seed, each in its own
    process with its own local Ray instance (and this session's beside them): every stage
    from scratch, the same rows, and consoles that hold our lines only. The test-size world
    and a few training steps: determinism does not depend on size."""
    config = tmp_path / "smoke.yaml"
    config.write_text(smoke_config(shard_size=32, workers=1))
    runs = {}
    for name in ("first", "second"):
        argv = ["run", "--data", tiny_world, "--work", str(tmp_path / name), "--config"]
        runs[name] = subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", *argv, str(config), "--quick"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    rows = []
    for name, proc in runs.items():
        console = proc.communicate(timeout=900)[0].splitlines()
        print(f"lsda run --quick ({name}), its console:", *console[:40], sep="\n")
        assert proc.returncode == 0, "\n".join(console[-30:])
        # Ray's own lines, as they showed before: its C++ core, the local-instance banner, the
        # token notice, the progress-bar notice, the cleaner's failed look-up. (A worker that
        # crashes still shows: Ray retries its task, and the user should know.)
        noise = [x for x in console if RAY_INTERNAL_LINE.match(x) or any(n in x for n in NOISE)]
        assert noise == []
        assert console[0] == "== extract cls" and console[-1].startswith("report: ")
        doc = json.loads((tmp_path / name / "report/metrics.json").read_text())
        keys = ("map_heldout", "map_trained", "map_all")
        rows.append([[r["name"], *(r[k] for k in keys)] for r in doc["rows"]])
    print("two runs, rows (name, held-out, trained, all):", *rows)
    for a, b in zip(*rows, strict=True):
        assert a[0] == b[0]
        for x, y in zip(a[1:], b[1:], strict=True):
            assert (x is None and y is None) or x == pytest.approx(y, abs=0.001)  # 0.1 mAP
