"""Detections drawn on their images, with category names (the paper's Figs. 4 and 7)."""

from __future__ import annotations

import cv2
import pyarrow as pa

from pipeline.io import storage
from pipeline.io.images import decode_rgb
from pipeline.workdir import WorkDir
from schemas.config import ExtractConfig


def draw_detections(
    work: str,
    name: str,
    split: str,
    table: pa.Table,
    urls: dict[str, str],
    limit: int,
    min_score: float = 0.0,
    names: dict[str, str] | None = None,
) -> list[str]:
    """Draw the detections above ``min_score`` on up to ``limit`` images (paper Figs. 4, 7)."""
    rows = [r for r in table.to_pylist() if r["score"] >= min_score]
    by_image: dict[str, list[dict]] = {}
    for r in rows:
        by_image.setdefault(r["image_id"], []).append(r)
    written = []
    for image_id in sorted(by_image)[:limit]:
        written.append(
            draw_one(work, name, split, image_id, urls[image_id], by_image[image_id], names)
        )
    return written


MAX_DRAWN = 3  # boxes per image: the best ones; more crowd the picture and hide the objects
FONT, FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.45


def draw_one(work, name, split, image_id, url, dets, names=None) -> str:
    image, _ = decode_rgb(storage.read_bytes(url), ExtractConfig.max_pixels, 1, (0, 0, 0))
    scale = max(1, 400 // max(image.shape[:2]))
    canvas = cv2.resize(
        image[..., ::-1], None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST
    ).copy()
    best = sorted(dets, key=lambda d: -d["score"])[:MAX_DRAWN]
    boxes = [
        ((int(d["x1"] * scale), int(d["y1"] * scale)),
         (int((d["x2"] + 1) * scale) - 1, int((d["y2"] + 1) * scale) - 1))
        for d in best
    ]  # fmt: skip
    for p1, p2 in boxes:  # every box first: no box is drawn over a label
        cv2.rectangle(canvas, p1, p2, (0, 255, 255), 2)
    placed: list[tuple[int, int, int, int]] = []
    for d, (p1, p2) in zip(best, boxes, strict=True):
        label = f"{(names or {}).get(d['wnid'], d['wnid'])} {d['score']:.1f}"
        origin = _label_origin(label, p1, p2, canvas.shape, placed)
        for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # white on a halo
            cv2.putText(canvas, label, origin, FONT, FONT_SCALE, colour, thickness, cv2.LINE_AA)
    url_out = storage.join(WorkDir(work).detections(name, split), "drawn", f"{image_id}.jpg")
    storage.write_bytes(url_out, cv2.imencode(".jpg", canvas)[1].tobytes())
    return url_out


def _label_origin(label: str, p1, p2, shape, placed: list) -> tuple[int, int]:
    """Where a box's label goes: inside its top edge, else above it, else below it, else
    further down inside it, at the first place that overlaps no label placed before (which
    joins ``placed``)."""
    (w, h), base = cv2.getTextSize(label, FONT, FONT_SCALE, 3)
    height, width = shape[:2]
    x = min(max(p1[0] + 2, 0), max(width - w, 0))
    tries = [p1[1] + h + 2, p1[1] - base - 2, p2[1] + h + 2]
    tries += [p1[1] + (k + 2) * (h + base + 2) for k in range(8)]
    for y in [*tries, tries[0]]:  # none free: the first place
        y = min(max(y, h), height - base)
        rect = (x, y - h, x + w, y + base)
        if all(rect[2] <= r[0] or r[2] <= rect[0] or rect[3] <= r[1] or r[3] <= rect[1]
               for r in placed):  # fmt: skip
            break
    placed.append(rect)
    return x, y
