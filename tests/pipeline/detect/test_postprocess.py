import torch

from pipeline.detect.postprocess import background_scores, detections, iou_inclusive
from schemas.config import PostConfig


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


def one_pass_detections(boxes: torch.Tensor, scores: torch.Tensor, cfg: PostConfig):
    """The obvious way: every class's best ``pre_nms_top`` windows through one NMS."""
    from torchvision.ops import batched_nms

    from pipeline.detect.postprocess import first_per_class, to_continuous

    top = min(cfg.pre_nms_top, len(boxes))
    s, idx = scores.topk(top, dim=0)
    cls = torch.arange(scores.shape[1]).expand(top, -1).reshape(-1)
    s, idx = s.reshape(-1), idx.reshape(-1)
    ok = s > cfg.score_threshold
    s, idx, cls = s[ok], idx[ok], cls[ok]
    keep = batched_nms(to_continuous(boxes[idx]), s, cls, cfg.nms_iou)
    keep = first_per_class(keep, cls, cfg.max_per_class)
    if cfg.max_per_image:
        keep = keep[: cfg.max_per_image]
    return boxes[idx[keep]], s[keep], cls[keep]


def clustered_boxes(n: int, g: torch.Generator, jitter: float = 20.0) -> torch.Tensor:
    """Proposals as selective search gives them: many near-copies around a few places."""
    centres = torch.rand(6, 2, generator=g) * 300
    xy = centres[torch.randint(0, 6, (n,), generator=g)] + torch.randn(n, 2, generator=g) * jitter
    wh = torch.rand(n, 2, generator=g) * 60 + 40
    return torch.cat([xy, xy + wh], 1).round()


def test_the_prefix_shortcut_gives_what_one_nms_over_everything_gives():
    g = torch.Generator().manual_seed(0)
    configs = [
        PostConfig(),
        PostConfig(max_per_class=2, nms_iou=0.5),
        PostConfig(max_per_class=3, pre_nms_top=20, max_per_image=15),
        PostConfig(score_threshold=0.5, max_per_class=5),
    ]
    for trial in range(12):  # both passes run: some classes are short after the first
        n, c = (400, 24) if trial % 2 else (60, 5)
        boxes = clustered_boxes(n, g, jitter=4.0 if trial % 3 else 30.0)
        scores = torch.randn(n, c, generator=g)
        for cfg in configs:
            got = detections(boxes, scores, cfg)
            want = one_pass_detections(boxes, scores, cfg)
            for a, b in zip(got, want, strict=True):
                torch.testing.assert_close(a, b)
