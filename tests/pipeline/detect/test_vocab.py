import dataclasses

import torch

from pipeline.detect.vocab import VocabScorer, naive_detect
from schemas.config import VocabPostConfig

K, D, N = 23, 8, 40


def _case(seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(N, D, generator=g)
    weight, bias = torch.randn(K + 1, D, generator=g), torch.randn(K + 1, generator=g)
    xy = torch.randint(0, 80, (N, 2), generator=g).float()
    wh = torch.randint(8, 40, (N, 2), generator=g).float()
    return feats, torch.cat([xy, xy + wh], 1), weight, bias


# nodes: 0 = categories 0-9, 1 = categories 10-22, 2 = every category (two levels up)
ANCESTRY = [(c, 0 if c < 10 else 1) for c in range(K)] + [(c, 2) for c in range(K)]


def _sorted(result):
    boxes, scores, classes = result
    rows = sorted(zip(classes.tolist(), scores.tolist(), boxes.tolist(), strict=True))
    return [(c, round(s, 4), b) for c, s, b in rows]


def test_node_scores_are_the_max_over_descendants():
    feats, boxes, weight, bias = _case()
    scorer = VocabScorer(weight, bias, VocabPostConfig(chunk=4), ANCESTRY, num_nodes=3)
    _, nodes = scorer.candidates(feats)
    logits = feats @ weight.T + bias
    scores = logits[:, :K] - logits[:, K:]
    expected = torch.stack([scores[:, :10].amax(1), scores[:, 10:].amax(1), scores.amax(1)], 1)
    torch.testing.assert_close(nodes, expected)


def test_chunking_gives_the_unchunked_result():
    feats, boxes, weight, bias = _case(1)
    cfg = VocabPostConfig(score_threshold=0.0, per_class=5, max_classes=6)
    whole = VocabScorer(weight, bias, cfg, ANCESTRY, 3).detect(feats, boxes)
    for chunk in (1, 5, 7):
        small = dataclasses.replace(cfg, chunk=chunk)
        assert _sorted(VocabScorer(weight, bias, small, ANCESTRY, 3).detect(feats, boxes)) == (
            _sorted(whole)
        )


def test_same_detections_as_the_naive_per_class_loop_when_nothing_is_pruned():
    feats, boxes, weight, bias = _case(2)
    cfg = VocabPostConfig(score_threshold=0.5, per_class=N, per_image=N * K, chunk=6)
    ours = VocabScorer(weight, bias, cfg).detect(feats, boxes)
    assert len(ours[1]) > 3
    assert _sorted(ours) == _sorted(naive_detect(feats, boxes, weight, bias, cfg))


def test_a_node_box_does_not_suppress_the_category_box_it_contains():
    feats = torch.eye(2)
    boxes = torch.tensor([[0.0, 0, 9, 9], [50, 50, 59, 59]])
    weight = torch.tensor([[5.0, 0], [0, 0], [0, 0]])  # category 0 on window 0; 1 never
    bias = torch.zeros(3)
    cfg = VocabPostConfig(score_threshold=1.0)
    b, s, c = VocabScorer(weight, bias, cfg, [(0, 0), (1, 0)], 1).detect(feats, boxes)
    assert sorted(c.tolist()) == [0, 2] and b.tolist() == [[0, 0, 9, 9]] * 2


def test_class_limit_keeps_the_best_classes():
    feats, boxes, weight, bias = _case(3)
    cfg = VocabPostConfig(score_threshold=-10, max_classes=2, cross_nms=1.0)
    _, scores, classes = VocabScorer(weight, bias, cfg).detect(feats, boxes)
    assert len(set(classes.tolist())) == 2
    full = feats @ weight[:K].T + bias[:K] - (feats @ weight[K] + bias[K])[:, None]
    assert torch.isclose(scores.max(), full.max())
