"""``WORK/report/categories.html``: what each held-out detector finds. One anchor per held-out
category (``#<wnid>``): its AP and its best detections on the evaluation split as crops, each
framed green when it covers an object of the category (the devkit's IoU threshold, duplicates
not checked) and red when not, with its score. One JPEG strip per category under
``report/categories/``; every image is read once, whichever categories it serves."""

from __future__ import annotations

import html
from collections import defaultdict

import cv2
import numpy as np

from pipeline.data.boxes import iou_matrix
from pipeline.evaluate.devkit import iou_thresholds
from pipeline.io import storage
from pipeline.io.images import decode_rgb
from pipeline.workdir import WorkDir
from schemas.config import ExtractConfig

CROP = 96  # px, each crop's side
CONTEXT = 0.1  # of the box's size, on each side
GREEN, RED = (40, 170, 40), (30, 30, 220)  # BGR


def best_per_category(table, wnids: set[str], n: int) -> dict[str, list[dict]]:
    """Each of ``wnids``' ``n`` best-scoring detections (rows of a detections table)."""
    mine = defaultdict(list)
    for r in table.to_pylist():
        if r["wnid"] in wnids:
            mine[r["wnid"]].append(r)
    return {w: sorted(rows, key=lambda r: -r["score"])[:n] for w, rows in mine.items()}


def covers_object(det: dict, gt_boxes: np.ndarray | None) -> bool:
    if gt_boxes is None or len(gt_boxes) == 0:
        return False
    box = np.array([[det["x1"], det["y1"], det["x2"], det["y2"]]], float)
    return bool((iou_matrix(box, gt_boxes)[0] >= iou_thresholds(gt_boxes)).any())


def crop(image: np.ndarray, det: dict, hit: bool) -> np.ndarray:
    """The detection's box with some context, CROP x CROP (BGR), framed and scored."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = det["x1"], det["y1"], det["x2"], det["y2"]
    dx, dy = CONTEXT * (x2 - x1 + 1), CONTEXT * (y2 - y1 + 1)
    c = (int(max(x1 - dx, 0)), int(max(y1 - dy, 0)),
         int(min(x2 + dx, w - 1)), int(min(y2 + dy, h - 1)))  # fmt: skip
    patch = image[c[1] : c[3] + 1, c[0] : c[2] + 1, ::-1]
    out = cv2.resize(np.ascontiguousarray(patch), (CROP, CROP), interpolation=cv2.INTER_LINEAR)
    cv2.rectangle(out, (1, 1), (CROP - 2, CROP - 2), GREEN if hit else RED, 3)
    label = f"{det['score']:.1f}"
    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(out, label, (5, CROP - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, thickness,
                    cv2.LINE_AA)  # fmt: skip
    return out


def write_category_page(
    work: str,
    split: str,
    best: dict[str, list[dict]],
    categories: list[dict],
    urls: dict[str, str],
    gt: dict[str, dict[str, np.ndarray]],
    row: str,
) -> str:
    """``categories`` (metrics.json's entries of the held-out ones, in page order) with their
    ``best`` detections; returns the page's URL."""
    by_image = defaultdict(list)
    for wnid, dets in best.items():
        for i, d in enumerate(dets):
            by_image[d["image_id"]].append((wnid, i, d))
    crops: dict[str, list] = {w: [None] * len(d) for w, d in best.items()}
    hits: dict[str, int] = defaultdict(int)
    for image_id, wanted in by_image.items():  # each image decoded once
        image, _ = decode_rgb(storage.read_bytes(urls[image_id]), ExtractConfig.max_pixels, 1,
                              (0, 0, 0))  # fmt: skip
        for wnid, i, d in wanted:
            hit = covers_object(d, gt.get(image_id, {}).get(wnid))
            crops[wnid][i] = crop(image, d, hit)
            hits[wnid] += hit
    rdir = WorkDir(work).report()
    sections = []
    for c in categories:
        wnid = c["wnid"]
        ap = "—" if c["ap"] is None else f"{100 * c['ap']:.1f}"
        head = (f'<h2 id="{html.escape(wnid)}">{html.escape(c["name"])} <small>{wnid} · AP '
                f"{ap} · {c['gt']} objects</small></h2>")  # fmt: skip
        if crops.get(wnid):
            gap = np.full((CROP, 4, 3), 255, np.uint8)
            strip = np.hstack([x for p in crops[wnid] for x in (p, gap)][:-1])
            name = f"categories/{wnid}.jpg"
            storage.write_bytes(storage.join(rdir, name), cv2.imencode(".jpg", strip)[1].tobytes())
            n = len(crops[wnid])
            body = f'<p>best {n}, {hits[wnid]} on an object</p><img src="{name}">'
        else:
            body = "<p>no detections</p>"
        sections.append(head + body)
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>LSDA held-out categories</title><style>body{{font-family:sans-serif;margin:2em}}
small{{color:#666;font-weight:normal}}</style></head><body>
<h1>Held-out categories: the best detections of {html.escape(row)} on {html.escape(split)}</h1>
<p>Categories without boxes, best AP first. Each crop is one detection (its box and 10%
around it), framed <b style="color:#28aa28">green</b> when it covers an object of the category
(IoU at the devkit's threshold) and <b style="color:#dc1e1e">red</b> when not, with its score.
<a href="index.html">Back to the report</a>.</p>
{"".join(sections)}
</body></html>"""
    url = storage.join(rdir, "categories.html")
    storage.write_text(url, page)
    return url
