"""A detector to ONNX and TorchScript, its vocabulary beside it (``pipeline/model/export.py``)."""

from __future__ import annotations

import argparse
import json

from jobs.common import model_arg
from pipeline.model.export import FORMATS, export_detector

DESCRIPTION = "export: a detector to ONNX / TorchScript scoring graphs (windows -> scores)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work", required=True, help="work dir URL")
    p.add_argument(
        "--model",
        action="append",
        required=True,
        help="a file name in WORK/models (knn-5 or detector-knn-5.pt) or a URL (repeatable)",
    )
    p.add_argument("--out", help="folder for the exports (default: beside each model)")
    p.add_argument(
        "--format", action="append", choices=FORMATS, help="repeatable; default: every format"
    )


def run(args: argparse.Namespace) -> int:
    formats = tuple(args.format or FORMATS)
    for spec in args.model:
        manifest = export_detector(model_arg(spec, args.work), args.out, formats)
        files = {fmt: f["url"] for fmt, f in manifest["files"].items()}
        summary = {"categories": len(manifest["wnids"]), "opset": manifest["opset"]}
        print(json.dumps({"model": spec, **summary, "files": files}))
    return 0


if __name__ == "__main__":
    from jobs.common import stage_main

    raise SystemExit(stage_main(DESCRIPTION, add_arguments, run))
