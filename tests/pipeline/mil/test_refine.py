"""The multiple-instance refinement of one row, on tiny tensors."""

import torch

from pipeline.mil.negatives import NegativePool
from pipeline.mil.refine import (
    MilSettings,
    best_windows,
    ceiling_of,
    fit_difference,
    refine_difference,
    with_ones,
)


def _bags(n_bags: int, size: int, dim: int, signal: torch.Tensor, seed: int = 0):
    """Bags of noise windows, each with one window (its index returned) moved along
    ``signal``: the latent positive."""
    g = torch.Generator().manual_seed(seed)
    bags, latent = [], []
    for _ in range(n_bags):
        x = torch.randn(size, dim, generator=g)
        i = int(torch.randint(size, (1,), generator=g))
        x[i] += signal
        bags.append(with_ones(x))
        latent.append(i)
    return bags, latent


def test_best_windows_are_each_bags_highest_scores_first_on_ties():
    bags = [torch.tensor([[0.0, 1], [2, 1], [2, 1]]), torch.tensor([[5.0, 1], [1, 1]])]
    d = torch.tensor([1.0, 0.0])
    assert [b.tolist() for b in best_windows(bags, d)] == [[1], [0]]
    assert [b.tolist() for b in best_windows(bags, d, top=2)] == [[1, 2], [0, 1]]


def test_the_pull_keeps_the_row_where_it_started_and_data_moves_it():
    g = torch.Generator().manual_seed(1)
    pos = with_ones(torch.randn(40, 6, generator=g) + 2)
    neg = with_ones(torch.randn(400, 6, generator=g) - 2)
    d0 = torch.zeros(7)
    held = fit_difference(d0, pos, neg, lam=1e4, steps=100)
    free = fit_difference(d0, pos, neg, lam=1e-3, steps=100)
    assert (held - d0).abs().max() < 1e-3
    assert (pos @ free).min() > (neg @ free).max()  # separable: every positive above


def test_rounds_find_the_latent_positive_from_a_weak_start():
    dim = 16
    signal = torch.zeros(dim)
    signal[:4] = 3.0
    bags, latent = _bags(40, 30, dim, signal)
    negatives = NegativePool(
        [with_ones(torch.randn(2000, dim, generator=torch.Generator().manual_seed(2))).numpy()],
        2000,
    )
    d0 = with_ones(signal[None] * 0.1)[0]  # a weak hint of the direction, as k-NN gives
    d0[-1] = 0.0
    out = refine_difference(d0, bags, negatives, MilSettings(rounds=3, lam=1e-3, hard=500))
    found = sum(int(c[0]) == i for c, i in zip(out.chosen, latent, strict=True))
    assert found >= 36  # of 40; a random window: 40 / 30 expected
    again = refine_difference(d0, bags, negatives, MilSettings(rounds=3, lam=1e-3, hard=500))
    assert torch.equal(out.d, again.d)  # deterministic


def test_the_ceiling_is_a_quantile_of_the_positives_scores_and_off_by_default():
    pos = with_ones(torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0]]))
    d = torch.tensor([1.0, 0.0])
    assert ceiling_of(pos, d, None) is None
    assert ceiling_of(pos, d, 0.0) == 0.0 and ceiling_of(pos, d, 0.5) == 2.0
