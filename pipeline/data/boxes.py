"""Box arithmetic in ILSVRC's convention: 0-based inclusive pixels, so width = x2 - x1 + 1."""

from __future__ import annotations

import numpy as np


def area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return inter / np.maximum(union, 1e-9)


def best_overlap(proposals: np.ndarray, gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each proposal, the index of the ground-truth box it overlaps most (-1 if there is
    none) and that IoU."""
    n = len(proposals)
    if len(gt_boxes) == 0 or n == 0:
        return np.full(n, -1, np.int64), np.zeros(n, np.float32)
    ious = iou_matrix(proposals, gt_boxes)
    best = ious.argmax(1)
    return best, ious[np.arange(n), best].astype(np.float32)


def label_by_iou(
    proposals: np.ndarray, gt_boxes: np.ndarray, gt_labels: list[str], fg_iou: float = 0.5
) -> tuple[list[str | None], np.ndarray]:
    """R-CNN fine-tuning labels: the class of the best-overlapping box if IoU >= ``fg_iou``,
    else None (background). Returns (labels, best IoU per proposal)."""
    best, ious = best_overlap(proposals, gt_boxes)
    labels = [
        gt_labels[j] if j >= 0 and v >= fg_iou else None for j, v in zip(best, ious, strict=True)
    ]
    return labels, ious
