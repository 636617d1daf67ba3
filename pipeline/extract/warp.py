"""R-CNN window warping: dilate a box for context, clip, crop, anisotropic resize, mean fill.

Geometry (R-CNN's ``rcnn_im_crop`` in 'warp' mode, written in continuous 0-based
coordinates): the box is dilated about its centre so that, once warped to ``size`` x ``size``,
``padding`` pixels of context surround it; the part of the dilated box inside the image is
resized (bilinear, no antialiasing) into the matching part of the output and the rest is
filled with the pixel mean.
"""

from __future__ import annotations

import cv2
import numpy as np


def context_padding(size: int) -> float:
    """R-CNN's 16 pixels of context at 227 px, scaled with the input size."""
    return 16.0 * size / 227.0


def warp_geometry(box, img_w: int, img_h: int, size: int, padding: float):
    """Source crop (x1, y1, x2, y2, inclusive) and destination (x, y, w, h) in the window."""
    x1, y1, x2, y2 = (float(v) for v in box)
    scale = size / (size - 2 * padding)
    src, dst = [], []
    for lo, hi, limit in ((x1, x2, img_w), (y1, y2, img_h)):
        centre, half = (lo + hi + 1) / 2, (hi - lo + 1) / 2 * scale
        e1, e2 = round(centre - half), round(centre + half) - 1  # dilated, unclipped
        c1, c2 = max(e1, 0), min(e2, limit - 1)
        s = size / (e2 - e1 + 1)
        offset = round((c1 - e1) * s)
        extent = min(max(round((c2 - c1 + 1) * s), 1), size - offset)
        src.append((c1, c2))
        dst.append((offset, extent))
    (sx1, sx2), (sy1, sy2) = src
    (dx, dw), (dy, dh) = dst
    return (sx1, sy1, sx2, sy2), (dx, dy, dw, dh)


def warp_windows(
    image: np.ndarray, boxes: np.ndarray, size: int, padding: float, mean: np.ndarray
) -> np.ndarray:
    """Warp every box of ``image`` (H, W, 3 uint8): returns (N, size, size, 3) uint8."""
    h, w = image.shape[:2]
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    out[:] = np.round(np.asarray(mean, np.float32)).astype(np.uint8)
    for i, box in enumerate(boxes):
        (sx1, sy1, sx2, sy2), (dx, dy, dw, dh) = warp_geometry(box, w, h, size, padding)
        crop = image[sy1 : sy2 + 1, sx1 : sx2 + 1]
        out[i, dy : dy + dh, dx : dx + dw] = cv2.resize(
            crop, (dw, dh), interpolation=cv2.INTER_LINEAR
        )
    return out


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Anisotropic resize of a whole image to size x size (classification inputs)."""
    interp = cv2.INTER_AREA if min(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)
