"""Our NMS and IoU (torchvision's kernel, loaded without the package) against torchvision's
own functions: the same indices in the same order, ties in scores and IoUs included, on
both sides of batched NMS's switch from one offset call to a call per group."""

import subprocess
import sys

import pytest
import torch
import torchvision.ops as tv

from pipeline.detect import nms as ours


def _cases(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    boxes = torch.rand(n, 4, generator=g) * 100
    boxes[:, 2:] += boxes[:, :2] + 1
    boxes = boxes.round()  # whole pixels: equal IoUs happen
    scores = (torch.rand(n, generator=g) * 10).round() / 10  # and equal scores
    groups = torch.randint(0, 7, (n,), generator=g)
    return boxes, scores, groups


@pytest.mark.parametrize("n", [0, 1, 60, 1000, 1001, 2500])  # switch: > 4,000 numbers
def test_nms_equals_torchvisions(n):
    for seed in range(5):
        boxes, scores, groups = _cases(n, seed)
        for iou in (0.3, 0.5):
            assert torch.equal(ours.nms(boxes, scores, iou), tv.nms(boxes, scores, iou))
            assert torch.equal(
                ours.batched_nms(boxes, scores, groups, iou),
                tv.batched_nms(boxes, scores, groups, iou),
            )
        for b in (boxes, boxes.double()):
            assert torch.equal(ours.box_iou(b, b[:9]), tv.box_iou(b, b[:9]))


def test_detection_does_not_import_torchvision():
    code = (
        "import sys, torch; from pipeline.detect import stage, nms; "
        "nms.nms(torch.zeros(1, 4), torch.ones(1), 0.5); print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
