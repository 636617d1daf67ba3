"""``lsda evaluate``: the devkit protocol over a detector's detections on a split; writes
``WORK/evaluate/<name>/<split>/metrics.json`` (schema: ``schemas/metrics.py``)."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from pipeline.data.categories import read_categories
from pipeline.data.det_reader import read_det_split
from pipeline.data.hierarchy import read_hierarchy
from pipeline.evaluate.charts import ap_chart, error_chart
from pipeline.evaluate.devkit import evaluate_detections, false_positive_types, mean_ap
from pipeline.io import storage
from pipeline.workdir import WorkDir
from schemas.metrics import validate_detector_metrics
from schemas.records import DataError


def ground_truth(data: str, split: str) -> dict[str, dict[str, np.ndarray]]:
    gt: dict[str, dict[str, list]] = {}
    truth = read_det_split(data, split)
    truth.raise_pending()  # a box that could not be read must not count as a missed one
    for ann in truth.annotations:
        per = gt.setdefault(ann.image_id, {})
        for b in ann.boxes:
            per.setdefault(b.wnid, []).append([b.xmin, b.ymin, b.xmax, b.ymax])
    return {i: {w: np.array(v, float) for w, v in per.items()} for i, per in gt.items()}


def load_detections(work: str, name: str, split: str, images: set[str]):
    table = storage.read_table(WorkDir(work).detection_table(name, split))
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


def to_parent_level(gt: dict, wnids: list[str], b: set[str], hierarchy):
    """Ground truth relabelled with each category's parent in the hierarchy (its first, when
    WordNet gives several); the parents; and which of them count as trained: those whose
    detection categories all have boxes (held-out: none has; mixed parents count in "all")."""
    parent = {w: sorted(hierarchy.parents.get(w, [w]))[0] for w in wnids}
    up: dict[str, dict[str, list]] = {}
    for image, per in gt.items():
        for w, boxes in per.items():
            up.setdefault(image, {}).setdefault(parent.get(w, w), []).append(boxes)
    gt_up = {i: {p: np.concatenate(v) for p, v in per.items()} for i, per in up.items()}
    parents = sorted(set(parent.values()))
    children = {p: {w for w in wnids if parent[w] == p} for p in parents}
    sets = {p: "B" if c <= b else "A" if not c & b else "mixed" for p, c in children.items()}
    return gt_up, parents, sets


def _ground_truth_at(data: str, split: str, set_b: list[str], level: str, held_back) -> tuple:
    """(ground truth, wnids, names, set per wnid, similar-categories function) at ``level``."""
    categories = read_categories(data)
    wnids = [c.wnid for c in categories]
    names = {c.wnid: c.name for c in categories}
    gt = ground_truth(data, split)
    b = set(set_b)
    sets = {w: "B" if w in b else "added" if w in held_back else "A" for w in wnids}
    try:
        hierarchy = read_hierarchy(data)
        similar = hierarchy.siblings
    except DataError:
        if level == "parent":
            raise
        similar = lambda w: set()  # noqa: E731 - no hierarchy: nothing counts as similar
    if level == "parent":
        gt, wnids, sets = to_parent_level(gt, wnids, b, hierarchy)
        names = {w: hierarchy.names.get(w, w) for w in wnids}
    elif level != "category":
        raise ValueError(f"level must be category or parent, not {level!r}")
    return gt, wnids, names, sets, similar


def _metrics(name, split, level, gt, results, wnids, names, sets, similar) -> dict:
    """metrics.json: mAP per set, AP per category, false-positive types on held-out ones."""
    heldout = [w for w in wnids if sets[w] == "A"]
    doc = {
        "detector": name,
        "split": split,
        "level": level,
        "images": len(gt),
        "map_trained": mean_ap(results, [w for w in wnids if sets[w] == "B"]),
        "map_heldout": mean_ap(results, heldout),
        "map_all": mean_ap(results, [w for w in wnids if sets[w] != "added"]),
        "map_added": mean_ap(results, [w for w in wnids if sets[w] == "added"]),
        "categories": [
            {
                "wnid": w,
                "name": names[w],
                "set": sets[w],
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
    return doc


def run_evaluate(
    data: str,
    work: str,
    name: str,
    split: str,
    set_b: list[str],
    level: str = "category",
    held_back: list[str] = (),
) -> dict:
    """Evaluate ``WORK/detect/<name>/<split>``; ``level="parent"`` evaluates the detections of
    the categories' WordNet parents (``lsda score-vocab --hierarchy``) against the ground truth
    relabelled with those parents. ``held_back`` categories (left out of training, added later
    by ``lsda add-categories``) are set "added" and averaged apart, in ``map_added``."""
    gt, wnids, names, sets, similar = _ground_truth_at(data, split, set_b, level, held_back)
    results = evaluate_detections(load_detections(work, name, split, set(gt)), gt, wnids)
    doc = _metrics(name, split, level, gt, results, wnids, names, sets, similar)
    wd = WorkDir(work)
    storage.write_text(wd.metrics(name, split, level), json.dumps(doc, indent=1))
    ap_chart(doc, wd.evaluation_file(name, split, "ap.png", level))
    if doc["errors_heldout"]:
        error_chart({name: doc}, [name], wd.evaluation_file(name, split, "errors.png", level))
    return doc
