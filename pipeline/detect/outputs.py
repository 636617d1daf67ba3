"""What ``detect`` and ``score-vocab`` write per model under ``WORK/detect/<model>/<split>/``:
``detections.parquet`` (image_id, wnid, category_id, score, x1, y1, x2, y2; 0-based inclusive
pixels), ``detections.json`` (COCO-style results: image_id, category_id, bbox [x, y, w, h],
score), ``_SUCCESS``, and with ``draw`` the drawn images."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from pipeline.detect.draw import draw_detections
from pipeline.io import storage
from pipeline.workdir import WorkDir

DETECTION_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("wnid", pa.string()),
        ("category_id", pa.int32()),
        ("score", pa.float32()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
        ("x2", pa.float32()),
        ("y2", pa.float32()),
    ]
)


def new_rows() -> dict[str, list]:
    return {"model": [], **{f: [] for f in DETECTION_SCHEMA.names}}


def add_rows(rows, model, image_id, boxes, scores, wnids, ids: dict[str, int]) -> None:
    n = len(scores)
    rows["model"] += [model] * n
    rows["image_id"] += [str(image_id)] * n
    rows["wnid"] += wnids
    rows["category_id"] += [ids.get(x, -1) for x in wnids]
    rows["score"] += np.asarray(scores).tolist()
    for j, col in enumerate(("x1", "y1", "x2", "y2")):
        rows[col] += np.asarray(boxes)[:, j].tolist()


def write_detections(
    work: str, names, split: str, table: pa.Table, images, n_images: int, draw: int
) -> dict:
    """Each model's rows of ``table`` to its output folder; a summary per model."""
    summary = {}
    for name in names:
        mine = (
            table.filter(pa.compute.equal(table.column("model"), name)) if table.num_rows else table
        )
        mine = (
            mine.select(DETECTION_SCHEMA.names).cast(DETECTION_SCHEMA)
            if mine.num_rows
            else DETECTION_SCHEMA.empty_table()
        )
        _write(work, name, split, mine)
        if draw:
            draw_detections(work, name, split, mine, ds_urls(work, split, images), draw)
        summary[name] = {"detections": mine.num_rows, "images": n_images}
    return summary


def _write(work: str, name: str, split: str, table: pa.Table) -> None:
    wd = WorkDir(work)
    storage.write_table(wd.detection_table(name, split), table)
    coco = [
        {
            "image_id": r["image_id"],
            "category_id": r["category_id"],
            "wnid": r["wnid"],
            "bbox": [r["x1"], r["y1"], r["x2"] - r["x1"] + 1, r["y2"] - r["y1"] + 1],
            "score": r["score"],
        }
        for r in table.to_pylist()
    ]
    storage.write_text(wd.detection_coco(name, split), json.dumps(coco))
    storage.write_text(done_marker(work, name, split), "")


def done_marker(work: str, name: str, split: str) -> str:
    return storage.join(WorkDir(work).detections(name, split), "_SUCCESS")


def finished(work: str, name: str, split: str) -> bool:
    return storage.exists(done_marker(work, name, split))


def ds_urls(work: str, split: str, images: list[str] | None) -> dict[str, str]:
    if images:
        return {storage.stem(u): u for u in images}
    urls = WorkDir(work).extract_parts(split, "proposals")
    tables = [storage.read_table(u, ["image_id", "image_url"]) for u in urls]
    return {r["image_id"]: r["image_url"] for t in tables for r in t.to_pylist()}
