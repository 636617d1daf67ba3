"""From window scores to detections: background subtraction, per-class NMS, top-N.

Boxes are ILSVRC pixels (0-based, inclusive); adding 1 to x2, y2 gives the continuous boxes
torchvision's NMS expects, with the same IoU.
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms, nms

from schemas.config import PostConfig


def background_scores(logits: torch.Tensor, background_row: int) -> torch.Tensor:
    """score_i(x) = w_i.x + b_i - (w_bg.x + b_bg) for every category row i."""
    return logits[:, :background_row] - logits[:, background_row : background_row + 1]


def iou_inclusive(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from torchvision.ops import box_iou

    return box_iou(to_continuous(a), to_continuous(b))


def to_continuous(boxes: torch.Tensor) -> torch.Tensor:
    return boxes + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=boxes.dtype, device=boxes.device)


def detections(boxes: torch.Tensor, scores: torch.Tensor, cfg: PostConfig):
    """boxes (N, 4), scores (N, C) -> (boxes, scores, class indices) after per-class NMS.

    Runs on the inputs' device. Greedy NMS keeps a box unless a better one kept before it
    overlaps it, so the survivors among a class's best k windows are the same whether NMS sees
    those k or all of them. The first ``max_per_class`` survivors are therefore found on a short
    prefix of each class's ranking, and only the classes whose prefix holds fewer go through NMS
    again on a prefix twice as long: the same output as one NMS over everything, at a fraction
    of the cost (most of the post-processing time was NMS over windows that could never be
    kept)."""
    n, c = scores.shape
    if n == 0 or c == 0:
        return boxes[:0], scores.new_zeros(0), torch.zeros(0, dtype=torch.long, device=boxes.device)
    top = min(cfg.pre_nms_top, n)
    ranked_scores, ranked_idx = scores.topk(top, dim=0)  # (top, C) best windows of every class
    ranked_scores, ranked_idx = ranked_scores.T, ranked_idx.T  # (C, top), rows descending
    cont = to_continuous(boxes.float())
    found_cls, found_rank = [], []
    active = torch.arange(c, device=boxes.device)  # classes still short of max_per_class
    k = min(top, PREFIX_PER_KEPT * cfg.max_per_class)
    while len(active):
        rows, ranks = _ranked_nms(cont, ranked_scores[active], ranked_idx[active], k, cfg)
        count = torch.bincount(rows, minlength=len(active))
        short = count < cfg.max_per_class
        if k < top:  # and candidates left beyond the prefix
            short &= ranked_scores[active, k] > cfg.score_threshold
        else:
            short.zero_()
        done = ~short[rows]
        found_cls.append(active[rows[done]])
        found_rank.append(ranks[done])
        active, k = active[short], min(2 * k, top)
    keep_cls, keep_rank = torch.cat(found_cls), torch.cat(found_rank)
    kept_scores = ranked_scores[keep_cls, keep_rank]
    order = kept_scores.argsort(descending=True, stable=True)[: cfg.max_per_image or None]
    keep_cls, keep_rank = keep_cls[order], keep_rank[order]
    return boxes[ranked_idx[keep_cls, keep_rank]].float(), kept_scores[order], keep_cls


PREFIX_PER_KEPT = 4  # first pass: a class's best 4 x max_per_class windows


def _ranked_nms(
    cont: torch.Tensor,
    ranked_scores: torch.Tensor,
    ranked_idx: torch.Tensor,
    k: int,
    cfg: PostConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class NMS over each row's first ``k`` ranked windows above the threshold: the
    (row, rank) of the first ``max_per_class`` survivors of every row."""
    s, idx = ranked_scores[:, :k], ranked_idx[:, :k]
    rows, ranks = (s > cfg.score_threshold).nonzero(as_tuple=True)
    keep = batched_nms(cont[idx[rows, ranks]], s[rows, ranks].float(), rows, cfg.nms_iou)
    keep = first_per_class(keep, rows, cfg.max_per_class)
    return rows[keep], ranks[keep]


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


def first_per_class(keep: torch.Tensor, cls: torch.Tensor, limit: int) -> torch.Tensor:
    """``keep`` is in descending score order; keep at most ``limit`` of each class."""
    classes = cls[keep]
    order = torch.sort(classes, stable=True)
    sorted_cls = order.values
    starts = torch.searchsorted(sorted_cls, sorted_cls, right=False)
    rank = torch.arange(len(sorted_cls), device=keep.device) - starts
    mask = torch.zeros(len(keep), dtype=torch.bool, device=keep.device)
    mask[order.indices[rank < limit]] = True
    return keep[mask]
