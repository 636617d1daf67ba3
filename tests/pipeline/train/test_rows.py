"""A read task's process deserialises the read function and its readers, and nothing of
them may import torch (``pipeline/train/rows.py``)."""

import json
import subprocess
import sys

from ray import cloudpickle

from pipeline.train.data import CLS_READER, WINDOW_READER
from pipeline.train.rows import read_rows

PROBE = (
    "import json, sys; from ray import cloudpickle; cloudpickle.loads(sys.stdin.buffer.read()); "
    "print(json.dumps(sorted(sys.modules)))"
)


def test_a_read_tasks_function_and_readers_do_not_import_torch():
    task = cloudpickle.dumps((read_rows, {"reader": CLS_READER}, {"reader": WINDOW_READER}))
    done = subprocess.run(
        [sys.executable, "-c", PROBE], input=task, capture_output=True, timeout=120, check=True
    )
    modules = set(json.loads(done.stdout))
    assert "pipeline.train.data" in modules and "pipeline.train.rows" in modules
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}
