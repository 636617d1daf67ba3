"""Arrow schemas of the records in `schemas.records`, for Parquet outputs and Ray Data."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from schemas.records import ImageAnnotation, Problem

BOX_TYPE = pa.struct(
    [
        ("wnid", pa.string()),
        ("xmin", pa.int32()),
        ("ymin", pa.int32()),
        ("xmax", pa.int32()),
        ("ymax", pa.int32()),
    ]
)

ANNOTATION_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("split", pa.string()),
        ("image_url", pa.string()),
        ("annotation_url", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("boxes", pa.list_(BOX_TYPE)),
    ]
)

PROBLEM_SCHEMA = pa.schema([("url", pa.string()), ("kind", pa.string()), ("message", pa.string())])


def annotations_to_table(records: Iterable[ImageAnnotation]) -> pa.Table:
    rows = [
        {
            "image_id": r.image_id,
            "split": r.split,
            "image_url": r.image_url,
            "annotation_url": r.annotation_url,
            "width": r.width,
            "height": r.height,
            "boxes": [b.__dict__ for b in r.boxes],
        }
        for r in records
    ]
    return pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA)


def problems_to_table(problems: Iterable[Problem]) -> pa.Table:
    return pa.Table.from_pylist([p.__dict__ for p in problems], schema=PROBLEM_SCHEMA)
