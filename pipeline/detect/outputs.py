"""What ``detect`` and ``score-vocab`` write per model under ``WORK/detect/<model>/<split>/``:
``detections.parquet`` (image_id, wnid, category_id, score, x1, y1, x2, y2; 0-based inclusive
pixels; every detection kept, what evaluation reads), ``detections.json`` (COCO-style results
for people and their tools: image_id, category_id, bbox [x, y, w, h], score; each image's best
``coco_per_image``, COCO's 100 by default), ``_SUCCESS``, and with ``draw`` the drawn images."""

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


COCO_PER_IMAGE = 100  # COCO's limit of detections per image

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
    work: str,
    names,
    split: str,
    table: pa.Table,
    n_images: int,
    draw: int,
    data: str,
    coco_per_image: int = COCO_PER_IMAGE,
) -> dict:
    """Each model's rows of ``table`` to its output folder; a summary per model."""
    summary = {}
    for name in names:
        mine = _model_rows(table, name) if table.num_rows else DETECTION_SCHEMA.empty_table()
        _write(work, name, split, mine, coco_per_image)
        if draw:
            draw_detections(work, name, split, mine, ds_urls(work, split, data), draw)
        summary[name] = {"detections": mine.num_rows, "images": n_images}
    return summary


def best_per_image(table: pa.Table, n: int) -> pa.Table:
    """Each image's ``n`` best-scoring rows (every row with ``n`` 0), images in id order."""
    if not n or table.num_rows == 0:
        return table
    table = table.take(pc.sort_indices(table, [("image_id", "ascending"), ("score", "descending")]))
    ids = table.column("image_id").to_numpy(zero_copy_only=False)
    starts = np.r_[0, np.flatnonzero(ids[1:] != ids[:-1]) + 1]
    rank = np.arange(len(ids)) - np.repeat(starts, np.diff(np.r_[starts, len(ids)]))
    return table.filter(pa.array(rank < n))


def _coco(table: pa.Table, per_image: int) -> list[dict]:
    """COCO-style results of each image's best ``per_image``: bbox as [x, y, width, height]."""
    return [
        {
            "image_id": r["image_id"],
            "category_id": r["category_id"],
            "wnid": r["wnid"],
            "bbox": [r["x1"], r["y1"], r["x2"] - r["x1"] + 1, r["y2"] - r["y1"] + 1],
            "score": r["score"],
        }
        for r in best_per_image(table, per_image).to_pylist()
    ]


def _write(work: str, name: str, split: str, table: pa.Table, coco_per_image: int) -> None:
    wd = WorkDir(work)
    storage.write_table(wd.detection_table(name, split), table)
    storage.write_text(wd.detection_coco(name, split), json.dumps(_coco(table, coco_per_image)))
    storage.write_text(done_marker(work, name, split), "")


def _model_rows(table: pa.Table, name: str) -> pa.Table:
    mine = table.filter(pc.equal(table.column("model"), name))
    return mine.select(DETECTION_SCHEMA.names).cast(DETECTION_SCHEMA)


def write_from_parts(
    work: str,
    name: str,
    split: str,
    parts: list[str],
    urls: dict[str, str],
    draw: int,
    coco_per_image: int = COCO_PER_IMAGE,
) -> int:
    """One model's outputs from a run's row parts (``image_list``; an image's rows are in one
    part), streamed: one part in memory at a time, whatever the number of images. Returns the
    detections written."""
    import pyarrow.parquet as pq

    wd = WorkDir(work)
    n, first, to_draw, drawn_ids = 0, True, [], set()
    with (
        storage.open_atomic(wd.detection_table(name, split)) as table_file,
        storage.open_atomic(wd.detection_coco(name, split)) as coco_file,
    ):
        writer = pq.ParquetWriter(table_file, DETECTION_SCHEMA, compression="zstd")
        coco_file.write(b"[")
        for url in parts:
            mine = _model_rows(storage.read_table(url), name)
            writer.write_table(mine)
            n += mine.num_rows
            for record in _coco(mine, coco_per_image):
                coco_file.write((b"" if first else b", ") + json.dumps(record).encode())
                first = False
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
