"""From window scores to detections: background subtraction, per-class NMS, top-N.

Boxes are ILSVRC pixels (0-based, inclusive); adding 1 to x2, y2 gives the continuous boxes
torchvision's NMS expects, with the same IoU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import batched_nms, nms


@dataclass(frozen=True)
class PostConfig:
    nms_iou: float = 0.3  # per-class NMS (R-CNN's test-time setting)
    pre_nms_top: int = 300  # windows kept per class before NMS
    max_per_class: int = 10  # detections kept per class and image
    max_per_image: int = 0  # 0: no limit
    score_threshold: float = float("-inf")


def background_scores(logits: torch.Tensor, background_row: int) -> torch.Tensor:
    """score_i(x) = w_i.x + b_i - (w_bg.x + b_bg) for every category row i."""
    return logits[:, :background_row] - logits[:, background_row : background_row + 1]


def iou_inclusive(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from torchvision.ops import box_iou

    return box_iou(to_continuous(a), to_continuous(b))


def to_continuous(boxes: torch.Tensor) -> torch.Tensor:
    return boxes + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=boxes.dtype)


def detections(boxes: torch.Tensor, scores: torch.Tensor, cfg: PostConfig):
    """boxes (N, 4), scores (N, C) -> (boxes, scores, class indices) after per-class NMS."""
    n, c = scores.shape
    if n == 0 or c == 0:
        return boxes[:0], scores.new_zeros(0), torch.zeros(0, dtype=torch.long)
    top = min(cfg.pre_nms_top, n)
    cand_scores, cand_idx = scores.topk(top, dim=0)  # (top, C) best windows of every class
    cls = torch.arange(c).expand(top, c).reshape(-1)
    cand_scores, cand_idx = cand_scores.reshape(-1), cand_idx.reshape(-1)
    ok = cand_scores > cfg.score_threshold
    cand_scores, cand_idx, cls = cand_scores[ok], cand_idx[ok], cls[ok]
    cand_boxes = boxes[cand_idx].float()
    keep = batched_nms(to_continuous(cand_boxes), cand_scores.float(), cls, cfg.nms_iou)
    keep = first_per_class(keep, cls, cfg.max_per_class)
    if cfg.max_per_image:
        keep = keep[: cfg.max_per_image]
    return cand_boxes[keep], cand_scores[keep], cls[keep]


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
        return torch.zeros(0, dtype=torch.long)
    b = boxes.double()
    shifted = b + (groups.double() * (b.max() + 1))[:, None]
    return nms(shifted, scores.double(), iou)


def first_per_class(keep: torch.Tensor, cls: torch.Tensor, limit: int) -> torch.Tensor:
    """``keep`` is in descending score order; keep at most ``limit`` of each class."""
    classes = cls[keep]
    order = torch.sort(classes, stable=True)
    sorted_cls = order.values
    starts = torch.searchsorted(sorted_cls, sorted_cls, right=False)
    rank = torch.arange(len(sorted_cls)) - starts
    mask = torch.zeros(len(keep), dtype=torch.bool)
    mask[order.indices[rank < limit]] = True
    return keep[mask]
