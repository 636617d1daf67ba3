"""From window scores to detections: background subtraction, per-class NMS, top-N.

Boxes are ILSVRC pixels (0-based, inclusive); adding 1 to x2, y2 gives the continuous boxes
torchvision's NMS kernel expects (``nms.py``), with the same IoU.
"""

from __future__ import annotations

import torch

from pipeline.detect.nms import batched_nms, box_iou, nms
from schemas.config import PostConfig


def background_scores(logits: torch.Tensor, background_row: int) -> torch.Tensor:
    """score_i(x) = w_i.x + b_i - (w_bg.x + b_bg) for every category row i."""
    return logits[:, :background_row] - logits[:, background_row : background_row + 1]


def iou_inclusive(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return box_iou(to_continuous(a), to_continuous(b))


def to_continuous(boxes: torch.Tensor) -> torch.Tensor:
    out = boxes.clone()
    out[:, 2:] += 1  # no constant tensor to copy to the device
    return out


def detections(boxes: torch.Tensor, scores: torch.Tensor, cfg: PostConfig):
    """boxes (N, 4), scores (N, C) -> (boxes, scores, class indices) after per-class NMS.

    Runs on the inputs' device. Greedy NMS keeps a box unless a better one kept before it
    overlaps it, so the survivors among a class's best k windows are the same whether NMS sees
    those k or all of them. The first ``max_per_class`` survivors are therefore found on a short
    prefix of each class's ranking, and only the classes whose prefix holds fewer go through NMS
    again on a prefix twice as long: the same output as one NMS over everything, at a fraction
    of the cost (most of the post-processing time was NMS over windows that could never be
    kept). Each pass waits for the device where a size must be known: which windows pass the
    threshold, NMS itself, and whether another pass is needed (none after the last); the rest
    carries masks, and one wait at the end gives the output's size."""
    boxes, scores, cls, ok = ranked_detections(boxes, scores, cfg)
    return boxes[ok], scores[ok], cls[ok]


def ranked_detections(boxes: torch.Tensor, scores: torch.Tensor, cfg: PostConfig):
    """``detections`` before the last compaction: (boxes, scores, classes, ok), best first,
    the rows with ``ok`` False (all after the others) to be dropped; a caller that takes the
    rows to the host drops them there, and the device is waited for once less."""
    n, c = scores.shape
    if n == 0 or c == 0:
        none = torch.zeros(0, dtype=torch.long, device=boxes.device)
        return boxes[:0], scores.new_zeros(0), none, none.bool()
    top = min(cfg.pre_nms_top, n)
    ranked_scores, ranked_idx = scores.topk(top, dim=0)  # (top, C) best windows of every class
    ranked_scores, ranked_idx = ranked_scores.T, ranked_idx.T  # (C, top), rows descending
    cont = to_continuous(boxes.float())
    found_cls, found_rank, found_ok = [], [], []
    active = torch.arange(c, device=boxes.device)  # classes still short of max_per_class
    k = min(top, PREFIX_PER_KEPT * cfg.max_per_class)
    while True:
        rows, ranks, within = _ranked_nms(cont, ranked_scores[active], ranked_idx[active], k, cfg)
        count = torch.zeros(len(active), dtype=torch.long, device=boxes.device)
        count.index_add_(0, rows, within.long())
        # short: fewer than max_per_class kept, and candidates left beyond the prefix
        last = k >= top
        short = (count < cfg.max_per_class) & (
            ranked_scores[active, min(k, top - 1)] > cfg.score_threshold
        )
        if last:
            short.zero_()
        found_cls.append(active[rows])
        found_rank.append(ranks)
        found_ok.append(within & ~short[rows])
        if last:
            break
        active, k = active[short], min(2 * k, top)
        if len(active) == 0:
            break
    keep_cls, keep_rank, ok = torch.cat(found_cls), torch.cat(found_rank), torch.cat(found_ok)
    kept_scores = ranked_scores[keep_cls, keep_rank]
    key = torch.where(ok, kept_scores, torch.full_like(kept_scores, -torch.inf))
    order = key.argsort(descending=True, stable=True)[: cfg.max_per_image or None]
    keep_cls, keep_rank = keep_cls[order], keep_rank[order]
    box = boxes[ranked_idx[keep_cls, keep_rank]].float()
    return box, kept_scores[order], keep_cls, ok[order]


PREFIX_PER_KEPT = 4  # first pass: a class's best 4 x max_per_class windows


def _ranked_nms(
    cont: torch.Tensor,
    ranked_scores: torch.Tensor,
    ranked_idx: torch.Tensor,
    k: int,
    cfg: PostConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class NMS over each row's first ``k`` ranked windows above the threshold: the
    (row, rank) of the survivors of every row, best first, and which of them are among the
    first ``max_per_class`` of their row."""
    s, idx = ranked_scores[:, :k], ranked_idx[:, :k]
    rows, ranks = (s > cfg.score_threshold).nonzero(as_tuple=True)
    keep = batched_nms(cont[idx[rows, ranks]], s[rows, ranks].float(), rows, cfg.nms_iou)
    return rows[keep], ranks[keep], within_per_class(keep, rows, cfg.max_per_class)


def nms_per_group(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float
) -> torch.Tensor:
    """NMS within each group, in one call: every group's boxes are moved out of the others'
    reach. torchvision's ``batched_nms`` does the same below 4,000 boxes on the CPU but loops
    over the groups above: ~5x slower for thousands of classes with a few boxes each (the
    large vocabulary), faster for a few classes with hundreds each (``detections``, where
    one call's all-pairs IoUs cost 3x). Float64, so that offsets of 21,000 classes x 1,000 px
    keep the IoUs exact."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    b = boxes.double()
    shifted = b + (groups.double() * (b.max() + 1))[:, None]
    return nms(shifted, scores.double(), iou)


def within_per_class(keep: torch.Tensor, cls: torch.Tensor, limit: int) -> torch.Tensor:
    """``keep`` is in descending score order: which of its entries are among the first
    ``limit`` of their class (a mask, so nothing waits for the device)."""
    order = torch.sort(cls[keep], stable=True)
    starts = torch.searchsorted(order.values, order.values, right=False)
    rank = torch.arange(len(keep), device=keep.device) - starts
    mask = torch.zeros(len(keep), dtype=torch.bool, device=keep.device)
    mask[order.indices] = rank < limit
    return mask


def first_per_class(keep: torch.Tensor, cls: torch.Tensor, limit: int) -> torch.Tensor:
    """``keep`` is in descending score order; keep at most ``limit`` of each class."""
    return keep[within_per_class(keep, cls, limit)]
