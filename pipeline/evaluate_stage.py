"""``lsda evaluate``: the devkit protocol over a detector's detections on a split; writes
``WORK/evaluate/<name>/<split>/metrics.json`` (schema: ``schemas/metrics.py``)."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from pipeline import storage
from pipeline.categories import read_categories
from pipeline.det_reader import read_det_split
from pipeline.detect_stage import out_dir
from pipeline.evaluate import evaluate_detections, false_positive_types, mean_ap
from pipeline.hierarchy import read_hierarchy
from schemas.metrics import validate_detector_metrics
from schemas.records import DataError


def ground_truth(data: str, split: str) -> dict[str, dict[str, np.ndarray]]:
    gt: dict[str, dict[str, list]] = {}
    for ann in read_det_split(data, split).annotations:
        per = gt.setdefault(ann.image_id, {})
        for b in ann.boxes:
            per.setdefault(b.wnid, []).append([b.xmin, b.ymin, b.xmax, b.ymax])
    return {i: {w: np.array(v, float) for w, v in per.items()} for i, per in gt.items()}


def load_detections(work: str, name: str, split: str, images: set[str]):
    table = storage.read_table(storage.join(out_dir(work, name, split), "detections.parquet"))
    cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
    grouped: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for i in range(table.num_rows):
        if cols["image_id"][i] in images:
            grouped[cols["wnid"][i]][cols["image_id"][i]].append(i)
    boxes = (
        np.stack([cols[c] for c in ("x1", "y1", "x2", "y2")], 1).astype(float)
        if table.num_rows
        else np.zeros((0, 4))
    )
    return {
        w: {img: (boxes[idx], cols["score"][idx].astype(float)) for img, idx in per.items()}
        for w, per in grouped.items()
    }


def run_evaluate(data: str, work: str, name: str, split: str, set_b: list[str]) -> dict:
    categories = read_categories(data)
    wnids = [c.wnid for c in categories]
    gt = ground_truth(data, split)
    results = evaluate_detections(load_detections(work, name, split, set(gt)), gt, wnids)
    b = set(set_b)
    heldout = [w for w in wnids if w not in b]
    try:
        hierarchy = read_hierarchy(data)
        similar = hierarchy.siblings
    except DataError:
        similar = lambda w: set()  # noqa: E731 - no hierarchy: nothing counts as similar
    names = {c.wnid: c.name for c in categories}
    doc = {
        "detector": name,
        "split": split,
        "images": len(gt),
        "map_trained": mean_ap(results, [w for w in wnids if w in b]),
        "map_heldout": mean_ap(results, heldout),
        "map_all": mean_ap(results, wnids),
        "categories": [
            {
                "wnid": w,
                "name": names[w],
                "set": "B" if w in b else "A",
                "ap": None if np.isnan(results[w].ap) else results[w].ap,
                "gt": results[w].n_gt,
                "detections": len(results[w].scores),
            }
            for w in wnids
        ],
        "errors_heldout": false_positive_types(results, gt, heldout, similar),
    }
    problems = validate_detector_metrics(doc)
    if problems:
        raise RuntimeError(f"metrics.json would not fit its schema: {problems}")
    url = storage.join(storage.join(work, "evaluate", name, split), "metrics.json")
    storage.write_text(url, json.dumps(doc, indent=1))
    return doc
