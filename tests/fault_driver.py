"""A driver for the storage-fault tests, run as its own process (``python -m tests.fault_driver
DATA WORK MAX_BAD``): one local Ray instance whose workers inherit the S3 endpoint and
timeouts of its environment (the faulty proxy's), and the extractions of val1 and cls. Prints
one JSON line: each split's summary, or its error."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

from pipeline.extract.stage import run_extract
from pipeline.failures import StageFailed
from schemas.config import load_config

SHARD_SIZES = {"val1": 1, "cls": 16}  # several parts and markers per split, few tasks


def main(data: str, work: str, max_bad: float) -> None:
    cfg = load_config("configs/toyworld.yaml").extract
    out = {}
    for split, size in SHARD_SIZES.items():
        try:
            summary = run_extract(
                data, work, split, replace(cfg, shard_size=size), progress=False, max_bad=max_bad
            )
            out[split] = summary
        except StageFailed as exc:
            out[split] = {"error": str(exc)}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
