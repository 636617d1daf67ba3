import torch

from pipeline.postprocess import PostConfig, background_scores, detections, iou_inclusive


def test_score_is_class_minus_background():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])  # 2 categories + background
    torch.testing.assert_close(
        background_scores(logits, 2), torch.tensor([[1.0, -1.0], [1.0, 6.0]])
    )


def test_iou_uses_inclusive_pixels():
    a = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    b = torch.tensor([[5.0, 0.0, 14.0, 9.0]])
    torch.testing.assert_close(iou_inclusive(a, b), torch.tensor([[50 / 150]]))


def test_per_class_nms_and_limits():
    boxes = torch.tensor(
        [[0, 0, 9, 9], [1, 1, 10, 10], [50, 50, 60, 60], [0, 0, 9, 9]], dtype=torch.float32
    )
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.2, 0.3], [0.85, 0.0]])
    b, s, c = detections(boxes, scores, PostConfig(nms_iou=0.3))
    got = sorted(zip(c.tolist(), s.tolist(), strict=True))
    assert [(k, round(v, 2)) for k, v in got] == [(0, 0.2), (0, 0.9), (1, 0.3), (1, 0.7)]
    b, s, c = detections(boxes, scores, PostConfig(nms_iou=0.3, max_per_class=1))
    assert sorted(c.tolist()) == [0, 1] and s.max() == torch.tensor(0.9)
    b, s, c = detections(boxes, scores, PostConfig(score_threshold=0.5))
    assert (s > 0.5).all() and len(s) == 2
    assert len(detections(boxes[:0], scores[:0], PostConfig())[1]) == 0
