"""Selective search proposals (OpenCV ximgproc, "fast" mode), in original image coordinates."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import cv2
import numpy as np


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def seed_opencv_rand(seed: int = 0) -> None:
    """Seed the C library's ``rand()``, which OpenCV's selective search draws its region
    ranking from (not from ``cv2.setRNGSeed``'s generator). Unseeded, a worker process's
    proposals for an image depended on the images it had processed before, so two extractions
    of the same data differed. Process-wide state: our extraction tasks and scoring actors run
    one image at a time per process."""
    libc = _libc()
    if libc is not None:
        libc.srand(seed)


def selective_search(
    image_rgb: np.ndarray,
    resize_width: int = 500,
    max_boxes: int = 2000,
    min_size: int = 16,
    mode: str = "fast",
) -> np.ndarray:
    """Proposals as float32 (N, 4) [x1, y1, x2, y2], 0-based inclusive, in the input's pixels.

    The image is resized to ``resize_width`` (0 keeps it as is) as in R-CNN's release; boxes
    smaller than ``min_size`` on either side (original pixels) and duplicates are dropped, and
    the first ``max_boxes`` in selective search's own ranking are kept, returned in coordinate
    order.
    """
    h, w = image_rgb.shape[:2]
    scale = resize_width / w if resize_width else 1.0
    image = image_rgb[..., ::-1]  # OpenCV's segmentation expects BGR
    if scale != 1.0:
        image = cv2.resize(
            image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
        )
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(np.ascontiguousarray(image))
    if mode == "fast":
        ss.switchToSelectiveSearchFast()
    elif mode == "quality":
        ss.switchToSelectiveSearchQuality()
    else:
        raise ValueError(f"selective search mode must be fast or quality, not {mode!r}")
    seed_opencv_rand()  # proposals: a function of the image alone
    rects = ss.process().astype(np.float64)
    if len(rects) == 0:
        return np.zeros((0, 4), np.float32)
    x1, y1 = rects[:, 0] / scale, rects[:, 1] / scale
    x2 = (rects[:, 0] + rects[:, 2]) / scale - 1
    y2 = (rects[:, 1] + rects[:, 3]) / scale - 1
    boxes = np.round(np.stack([x1, y1, x2, y2], 1))
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w - 1)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h - 1)
    keep = ((boxes[:, 2] - boxes[:, 0] + 1) >= min_size) & (
        (boxes[:, 3] - boxes[:, 1] + 1) >= min_size
    )
    boxes = boxes[keep]
    _, first = np.unique(boxes, axis=0, return_index=True)  # duplicates: keep the best-ranked
    kept = boxes[np.sort(first)][:max_boxes]
    # In a Ray worker other threads share rand() with OpenCV, so the ranking (and, past
    # max_boxes, the kept set) still varies from run to run; in coordinate order, a set that
    # fits under max_boxes comes out the same every time.
    return kept[np.lexsort(kept.T[::-1])].astype(np.float32)
