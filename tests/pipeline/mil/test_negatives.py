"""The negatives' pool: the background rule, the budget, and hard-negative mining."""

import numpy as np
import torch

from pipeline.mil.negatives import NegativePool, background_boxes


def test_background_is_below_fg_iou_with_every_box_and_sampled_by_seed():
    gt = np.array([[0, 0, 9, 9]], np.float32)
    proposals = np.array(
        [[0, 0, 9, 9], [0, 0, 8, 9], [20, 20, 29, 29], [5, 5, 14, 14], [30, 0, 39, 9]],
        np.float32,
    )
    bg = background_boxes("a/1", proposals, gt, 0.5, cap=10, seed=0)
    assert bg.tolist() == proposals[[2, 3, 4]].tolist()  # IoU 1.0 and 0.9 are not background
    everything = background_boxes("a/1", proposals, np.zeros((0, 4), np.float32), 0.5, 10, 0)
    assert len(everything) == 5  # an image without boxes: every proposal
    two = background_boxes("a/1", proposals, gt, 0.5, cap=2, seed=0)
    assert (
        len(two) == 2 and two.tolist() == background_boxes("a/1", proposals, gt, 0.5, 2, 0).tolist()
    )


def test_the_pool_keeps_its_budget_and_mines_the_highest_scores_in_pool_order():
    parts = [np.arange(12, dtype=np.float32).reshape(6, 2), -np.ones((4, 2), np.float32)]
    for p in parts:
        p.setflags(write=False)  # as the object store hands them over
    pool = NegativePool(parts, budget=8)
    assert len(pool) == 8  # 6 + the first 2 of the second part
    d = torch.tensor([1.0, 0.0])
    hard = pool.hardest(d, 3)
    assert hard[:, 0].tolist() == [6.0, 8.0, 10.0]  # the three highest, in pool order
    assert pool.hardest(d, 0).shape == (8, 2)  # 0: the whole pool
    assert pool.hardest(d, 100).shape == (8, 2)
    spread = NegativePool([parts[1], parts[0]], budget=10).hardest(d, 5)
    assert spread[:, 0].tolist() == [2.0, 4.0, 6.0, 8.0, 10.0]  # across parts


def test_a_ceiling_leaves_out_what_scores_above_it_and_never_empties_the_pool():
    pool = NegativePool([np.arange(12, dtype=np.float32).reshape(6, 2)], budget=6)
    d = torch.tensor([1.0, 0.0])  # scores 0, 2, ..., 10
    assert pool.hardest(d, 2, ceiling=7.0)[:, 0].tolist() == [4.0, 6.0]  # 8 and 10 left out
    assert pool.hardest(d, 0, ceiling=3.0)[:, 0].tolist() == [0.0, 2.0]  # all that is below
    assert pool.hardest(d, 5, ceiling=-1.0).shape == (5, 2)  # none below: the ceiling is off
