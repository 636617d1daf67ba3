"""What ``detect`` and ``score-vocab`` write per model under ``WORK/detect/<model>/<split>/``:
``detections.parquet`` (image_id, wnid, category_id, score, x1, y1, x2, y2; 0-based inclusive
pixels), ``detections.json`` (COCO-style results: image_id, category_id, bbox [x, y, w, h],
score), ``_SUCCESS``, and with ``draw`` the drawn images."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


ROWS_SCHEMA = pa.schema([("model", pa.string()), *DETECTION_SCHEMA])  # what actors return


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
    work: str, names, split: str, table: pa.Table, n_images: int, draw: int, data: str
) -> dict:
    """Each model's rows of ``table`` to its output folder; a summary per model."""
    summary = {}
    for name in names:
        mine = _model_rows(table, name) if table.num_rows else DETECTION_SCHEMA.empty_table()
        _write(work, name, split, mine)
        if draw:
            draw_detections(work, name, split, mine, ds_urls(work, split, data), draw)
        summary[name] = {"detections": mine.num_rows, "images": n_images}
    return summary


def _coco(table: pa.Table) -> list[dict]:
    """COCO-style results: bbox as [x, y, width, height]."""
    return [
        {
            "image_id": r["image_id"],
            "category_id": r["category_id"],
            "wnid": r["wnid"],
            "bbox": [r["x1"], r["y1"], r["x2"] - r["x1"] + 1, r["y2"] - r["y1"] + 1],
            "score": r["score"],
        }
        for r in table.to_pylist()
    ]


def _write(work: str, name: str, split: str, table: pa.Table) -> None:
    wd = WorkDir(work)
    storage.write_table(wd.detection_table(name, split), table)
    storage.write_text(wd.detection_coco(name, split), json.dumps(_coco(table)))
    storage.write_text(done_marker(work, name, split), "")


def _model_rows(table: pa.Table, name: str) -> pa.Table:
    mine = table.filter(pc.equal(table.column("model"), name))
    return mine.select(DETECTION_SCHEMA.names).cast(DETECTION_SCHEMA)


def write_from_parts(
    work: str, name: str, split: str, parts: list[str], urls: dict[str, str], draw: int
) -> int:
    """One model's outputs from a run's row parts (``image_list``), streamed: one part in
    memory at a time, whatever the number of images. Returns the detections written."""
    import pyarrow.parquet as pq

    wd = WorkDir(work)
    n, to_draw, drawn_ids = 0, [], set()
    with (
        storage.open_atomic(wd.detection_table(name, split)) as table_file,
        storage.open_atomic(wd.detection_coco(name, split)) as coco_file,
    ):
        writer = pq.ParquetWriter(table_file, DETECTION_SCHEMA, compression="zstd")
        coco_file.write(b"[")
        for url in parts:
            mine = _model_rows(storage.read_table(url), name)
            writer.write_table(mine)
            for record in _coco(mine):
                coco_file.write((b", " if n else b"") + json.dumps(record).encode())
                n += 1
            if len(drawn_ids) < draw:  # the first images' rows, for drawing
                to_draw.append(mine)
                drawn_ids.update(mine.column("image_id").to_pylist())
        writer.close()
        coco_file.write(b"]")
    if to_draw:
        draw_detections(work, name, split, pa.concat_tables(to_draw), urls, draw)
    storage.write_text(done_marker(work, name, split), "")
    return n


def done_marker(work: str, name: str, split: str) -> str:
    return storage.join(WorkDir(work).detections(name, split), "_SUCCESS")


def ds_urls(work: str, split: str, data: str) -> dict[str, str]:
    """Image id -> URL of an extracted split of the dataset at ``data``."""
    urls = WorkDir(work).extract_parts(split, "proposals")
    tables = [storage.read_table(u, ["image_id", "image_url"]) for u in urls]
    return {
        r["image_id"]: storage.resolve(data, r["image_url"]) for t in tables for r in t.to_pylist()
    }
