"""Non-maximum suppression and box IoU without importing torchvision.

torchvision's NMS is a compiled kernel in its extension library; importing the package to
reach it also imports its models and, through them, ``torch._dynamo``: 1.4-2 CPU s in every
process that detects (each scoring actor, each ``lsda`` driver), measured on 2 cores. Loading
the library alone registers the same kernel (``torch.ops.torchvision.nms``) in ~2 ms, so the
results are torchvision's, bit for bit (``tests/pipeline/detect/test_nms.py``).
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os

import torch


def _one_call_up_to(device: torch.device) -> int:
    """torchvision.ops.batched_nms's switch, kept so that which boxes survive, and in which
    order, stays what it was."""
    return 4000 if device.type == "cpu" else 20000


@functools.cache
def _kernel():
    if not hasattr(torch.ops.torchvision, "nms"):  # torchvision imported already: registered
        spec = importlib.util.find_spec("torchvision")
        if spec is None or spec.origin is None:
            raise ImportError("torchvision is not installed: its NMS kernel is needed")
        found = sorted(glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so")))
        if not found:
            raise ImportError(f"no compiled extension in {os.path.dirname(spec.origin)}")
        torch.ops.load_library(found[0])
    return torch.ops.torchvision.nms


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Indices of the kept boxes (x1, y1, x2, y2, continuous), best score first."""
    return _kernel()(boxes, scores, iou)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float
) -> torch.Tensor:
    """NMS within each group: torchvision's ``batched_nms`` rule. Few boxes: every group moved
    out of the others' reach by an offset, one call. Many on the CPU: one call per group (the
    all-pairs IoUs of one big call cost more), then all survivors by descending score."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    if boxes.numel() <= _one_call_up_to(boxes.device):
        offsets = groups.to(boxes) * (boxes.max() + 1)
        return nms(boxes + offsets[:, None], scores, iou)
    kept = torch.zeros_like(scores, dtype=torch.bool)
    for group in torch.unique(groups):
        members = torch.where(groups == group)[0]
        kept[members[nms(boxes[members], scores[members], iou)]] = True
    survivors = torch.where(kept)[0]
    return survivors[scores[survivors].sort(descending=True)[1]]


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, M) IoUs of continuous boxes."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    top_left = torch.max(a[:, None, :2], b[:, :2])
    bottom_right = torch.min(a[:, None, 2:], b[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b - inter)
