"""The ILSVRC devkit's detection evaluation (DESIGN §6) and Hoiem's false-positive analysis.

Per image, a category's detections are taken in descending score order; each is matched to
the ground-truth box of its class, among those not yet matched, with the highest IoU that
reaches that box's threshold min(0.5, w*h / ((w+10)(h+10))); without one it is a false
positive. AP is the area under the monotone precision envelope at every recall point (VOC
2010+ "all-point"). Boxes are ILSVRC pixels: 0-based, inclusive.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from pipeline.data.boxes import iou_matrix

ERROR_TYPES = ("loc", "sim", "oth", "bg")
ERROR_DEPTHS = (25, 50, 100, 200, 400, 800, 1600, 3200)


def iou_thresholds(gt: np.ndarray) -> np.ndarray:
    w, h = gt[:, 2] - gt[:, 0] + 1, gt[:, 3] - gt[:, 1] + 1
    return np.minimum(0.5, w * h / ((w + 10) * (h + 10)))


def match(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """True positives of ``det`` (already in descending score order) against ``gt``."""
    tp = np.zeros(len(det), bool)
    if len(gt) == 0 or len(det) == 0:
        return tp
    ious = iou_matrix(det, gt)
    ious[ious < iou_thresholds(gt)[None, :]] = -1.0  # below a box's own threshold: no match
    free = np.ones(len(gt), bool)
    for i in range(len(det)):
        cand = np.where(free, ious[i], -1.0)
        j = int(cand.argmax())
        if cand[j] >= 0:
            tp[i], free[j] = True, False
    return tp


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP; NaN for a category without ground truth."""
    if n_gt == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(tp, float)[order]
    tps, fps = np.cumsum(tp), np.cumsum(1 - tp)
    recall = tps / n_gt
    precision = tps / np.maximum(tps + fps, np.finfo(float).eps)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass
class CategoryResult:
    ap: float
    n_gt: int
    scores: np.ndarray
    tp: np.ndarray
    images: list[str] = field(default_factory=list)  # of each detection, in input order
    boxes: np.ndarray | None = None


def evaluate_detections(
    dets: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
    gt: dict[str, dict[str, np.ndarray]],
    wnids: list[str],
) -> dict[str, CategoryResult]:
    """dets[wnid][image] = (boxes, scores); gt[image][wnid] = boxes. AP per category."""
    n_gt = defaultdict(int)
    for boxes_by_wnid in gt.values():
        for w, boxes in boxes_by_wnid.items():
            n_gt[w] += len(boxes)
    results = {}
    for w in wnids:
        scores, tps, images, all_boxes = [], [], [], []
        for image, (boxes, s) in dets.get(w, {}).items():
            order = np.argsort(-s, kind="stable")
            boxes, s = boxes[order], s[order]
            tps.append(match(boxes, gt.get(image, {}).get(w, np.zeros((0, 4)))))
            scores.append(s)
            images += [image] * len(s)
            all_boxes.append(boxes)
        s = np.concatenate(scores) if scores else np.zeros(0)
        t = np.concatenate(tps) if tps else np.zeros(0, bool)
        b = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4))
        results[w] = CategoryResult(average_precision(s, t, n_gt[w]), n_gt[w], s, t, images, b)
    return results


def mean_ap(results: dict[str, CategoryResult], wnids) -> float | None:
    aps = [results[w].ap for w in wnids if w in results and not np.isnan(results[w].ap)]
    return float(np.mean(aps)) if aps else None


def false_positive_types(results: dict[str, CategoryResult], gt, wnids, similar) -> dict:
    """Hoiem et al.: the top-N false positives pooled over ``wnids``, by type, for each N.

    loc: IoU >= 0.1 with a box of its own class (poor localisation or a duplicate);
    sim: with a box of a similar category (``similar(wnid)``: WordNet siblings);
    oth: with a box of another category; bg: none of these.

    Only the best ``max(ERROR_DEPTHS)`` false positives are typed: no depth looks further (a
    run's millions of others cost minutes and changed nothing)."""
    wnid, image, box = top_false_positives(results, wnids, max(ERROR_DEPTHS))
    kinds = fp_types(wnid, image, box, gt, similar)
    out = {}
    for depth in ERROR_DEPTHS:
        top = kinds[:depth]
        if top:
            out[str(depth)] = {t: top.count(t) / len(top) for t in ERROR_TYPES}
    return out


def top_false_positives(results: dict[str, CategoryResult], wnids, limit: int):
    """(wnids, images, boxes (N, 4)) of the best ``limit`` false positives over ``wnids``,
    best first; equal scores in ``wnids`` order, then each category's detection order."""
    per = [(w, np.nonzero(~results[w].tp)[0]) for w in wnids]
    per = [(w, i) for w, i in per if len(i)]
    if not per:
        return [], [], np.zeros((0, 4))
    scores = np.concatenate([results[w].scores[i].astype(np.float64) for w, i in per])
    owner = np.repeat(np.arange(len(per)), [len(i) for _, i in per])
    local = np.concatenate([i for _, i in per])
    top = np.argsort(-scores, kind="stable")[:limit]
    wnid = [per[o][0] for o in owner[top]]
    image = [results[w].images[j] for w, j in zip(wnid, local[top], strict=True)]
    box = np.array([results[w].boxes[j] for w, j in zip(wnid, local[top], strict=True)])
    return wnid, image, box.reshape(-1, 4)


def fp_types(wnids: list[str], images: list[str], boxes: np.ndarray, gt, similar) -> list[str]:
    """The type of each false positive (its category, image, box): one IoU matrix per image,
    all its false positives against all its boxes."""
    kinds = ["bg"] * len(wnids)
    by_image: dict[str, list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        by_image[image].append(i)
    for image, rows in by_image.items():
        labelled = [(w, b) for w, b in gt.get(image, {}).items() if len(b)]
        if not labelled:
            continue
        gt_boxes = np.concatenate([b for _, b in labelled])
        gt_wnid = np.array([w for w, b in labelled for _ in range(len(b))])
        ious = iou_matrix(boxes[rows], gt_boxes)  # (false positives, boxes)
        for r, i in enumerate(rows):
            own = gt_wnid == wnids[i]
            sim = np.isin(gt_wnid, list(similar(wnids[i]))) & ~own
            for kind, cols in (("loc", own), ("sim", sim), ("oth", ~own & ~sim)):
                if cols.any() and ious[r, cols].max() >= 0.1:
                    kinds[i] = kind
                    break
    return kinds
