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


def draw_one(work, name, split, image_id, url, dets, names=None) -> str:
    image, _ = decode_rgb(storage.read_bytes(url), ExtractConfig.max_pixels, 1, (0, 0, 0))
    scale = max(1, 400 // max(image.shape[:2]))
    canvas = cv2.resize(
        image[..., ::-1], None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST
    ).copy()
    for d in sorted(dets, key=lambda d: -d["score"])[:10]:
        p1 = (int(d["x1"] * scale), int(d["y1"] * scale))
        p2 = (int((d["x2"] + 1) * scale) - 1, int((d["y2"] + 1) * scale) - 1)
        cv2.rectangle(canvas, p1, p2, (0, 255, 255), 2)
        label = f"{(names or {}).get(d['wnid'], d['wnid'])} {d['score']:.1f}"
        origin = (p1[0] + 2, p1[1] + 14)
        for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # white on a halo
            cv2.putText(
                canvas,
                label,
                origin,
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                colour,
                thickness,
                cv2.LINE_AA,
            )
    url_out = storage.join(WorkDir(work).detections(name, split), "drawn", f"{image_id}.jpg")
    storage.write_bytes(url_out, cv2.imencode(".jpg", canvas)[1].tobytes())
    return url_out
