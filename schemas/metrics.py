"""The shape of ``metrics.json`` (one detector) and ``report/metrics.json`` (the ablation).

``validate_*`` return the list of problems (empty when the document fits); tests and the
report writer use them so that a consumer can rely on every key below.
"""

from __future__ import annotations

DETECTOR_KEYS = {
    "detector": str,
    "split": str,
    "level": str,  # category, or parent (the categories' WordNet parents)
    "images": int,
    "map_trained": (float, type(None)),
    "map_heldout": (float, type(None)),
    "map_all": (float, type(None)),  # B and A; not the held-back categories
    "map_added": (float, type(None)),  # held-back categories, added by add-categories
    "categories": list,
    "errors_heldout": dict,
}
CATEGORY_KEYS = {
    "wnid": str,
    "name": str,
    "set": str,
    "ap": (float, type(None)),
    "gt": int,
    "detections": int,
}
ROW_KEYS = {
    "name": str,
    "map_trained": (float, type(None)),
    "map_heldout": (float, type(None)),
    "map_all": (float, type(None)),
}


def _check(doc: dict, keys: dict, where: str) -> list[str]:
    problems = [f"{where}: missing {k}" for k in keys if k not in doc]
    problems += [
        f"{where}: {k} is {type(doc[k]).__name__}"
        for k, t in keys.items()
        if k in doc and not isinstance(doc[k], t)
    ]
    return problems


def validate_detector_metrics(doc: dict) -> list[str]:
    problems = _check(doc, DETECTOR_KEYS, "metrics")
    for i, c in enumerate(doc.get("categories", [])):
        problems += _check(c, CATEGORY_KEYS, f"categories[{i}]")
    return problems


def validate_report(doc: dict) -> list[str]:
    problems = [] if isinstance(doc.get("rows"), list) else ["report: rows is not a list"]
    for i, row in enumerate(doc.get("rows", [])):
        problems += _check(row, ROW_KEYS, f"rows[{i}]")
    return problems
