"""Multiple-instance refinement of one held-out category's detector row (issue 24).

A held-out category j has no boxes, but each of its classification images holds the object
somewhere: a *bag* is one image's windows (its proposals and the whole image), fc7 features
from the detector's frozen layers 1-7. Detection scores a window x by
``d_j . x`` with ``d_j = W[j] - W[bg]`` (bias as the last column, ``x`` ending in 1), so
refining j means refining ``d_j``; the background row and every other row stay as they are.

Each round:

1. score every window of every bag with the current ``d_j``; each bag's best window (``top``
   of them) becomes a positive;
2. take the ``hard`` negatives the current ``d_j`` scores highest from the pool (hard-negative
   mining: most of a pool of tens of thousands of background windows is already far below
   zero and teaches nothing);
3. refit ``d_j``: logistic loss, positives against those negatives, each side averaged (a bag
   count of positives against thousands of negatives), plus ``lam / 2 * |d_j - d_j0|^2``,
   which keeps the row near the k-NN adapted one it started from (``d_j0``): 50 positives do
   not pin down a direction in fc7's space alone. Full-batch L-BFGS: deterministic, and a few
   hundred steps on ~5K windows take milliseconds.

The negatives are background proposals of the *detection* training images (DET train,
``negatives.py``), never
windows of the category's own bags: a classification image may hold the object more than once,
and a window that overlaps the chosen one little may be a second instance, so no window of a
bag is ever called background (the rule the issue asks to state). val1's background windows
are not used either: val1 holds set A's objects, unlabelled for training, so its "background"
holds the very objects being learned (docs/mil.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from schemas.config import MilConfig

if TYPE_CHECKING:  # negatives.py builds its pool with bags.py, which uses with_ones below
    from pipeline.mil.negatives import NegativePool


@dataclass(frozen=True)
class MilSettings:
    rounds: int = 2
    top: int = 1  # positives per bag and round: its best-scoring windows
    lam: float = 1e-3  # pull towards the row the refinement started from
    steps: int = 200  # L-BFGS iterations per round
    hard: int = 4096  # negatives per round: the pool's highest-scoring (0: the whole pool)
    # pool windows scoring above this quantile of the round's positives are not negatives
    # (presumed unlabelled instances); None: every window of the pool may be one
    unlabelled_quantile: float | None = None


def settings_of(cfg: MilConfig) -> MilSettings:
    return MilSettings(
        rounds=cfg.rounds,
        top=cfg.top,
        lam=cfg.lam,
        steps=cfg.steps,
        hard=cfg.hard_negatives,
        unlabelled_quantile=cfg.unlabelled_quantile,
    )


def ceiling_of(pos: torch.Tensor, d: torch.Tensor, q: float | None) -> float | None:
    """The score above which a pool window is taken for an unlabelled instance of the
    category: the ``q`` quantile of its positives' scores (None: no such window)."""
    return None if q is None else float(torch.quantile(pos.float() @ d, q))


def with_ones(features: torch.Tensor) -> torch.Tensor:
    """fc7 features with a column of ones: rows with the bias last apply as one product."""
    return torch.cat([features, features.new_ones(len(features), 1)], 1)


def best_windows(bags: list[torch.Tensor], d: torch.Tensor, top: int = 1) -> list[torch.Tensor]:
    """Indices of each bag's ``top`` highest-scoring windows under ``d`` (ties: the first)."""
    out = []
    for bag in bags:
        scores = bag.float() @ d
        order = torch.argsort(-scores, stable=True)
        out.append(order[: min(top, len(order))])
    return out


def fit_difference(
    d0: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, lam: float, steps: int
) -> torch.Tensor:
    """``d`` minimising mean softplus(-pos.d) + mean softplus(neg.d) + lam/2 |d - d0|^2."""
    d = d0.clone().float().requires_grad_(True)
    opt = torch.optim.LBFGS([d], lr=1, max_iter=steps, line_search_fn="strong_wolfe")
    pos, neg = pos.float(), neg.float()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.softplus(-(pos @ d)).mean() + F.softplus(neg @ d).mean()
        loss = loss + lam / 2 * ((d - d0) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return d.detach()


@dataclass
class Refined:
    d: torch.Tensor  # the refined difference row (D + 1)
    chosen: list[torch.Tensor]  # each bag's chosen windows in the last round


def refine_difference(
    d0: torch.Tensor, bags: list[torch.Tensor], negatives: NegativePool, s: MilSettings
) -> Refined:
    """The rounds above for one category: bags and the pool are features with ones."""
    d = d0.float()
    chosen: list[torch.Tensor] = []
    for _ in range(s.rounds):
        chosen = best_windows(bags, d, s.top)
        pos = torch.cat([bag[i] for bag, i in zip(bags, chosen, strict=True)])
        neg = negatives.hardest(d, s.hard, ceiling_of(pos, d, s.unlabelled_quantile))
        d = fit_difference(d0.float(), pos, neg, s.lam, s.steps)
    return Refined(d, chosen)


def refine_row(
    rows: torch.Tensor,
    j: int,
    bg: int,
    bags: list[torch.Tensor],
    negatives: NegativePool,
    s: MilSettings,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Output row ``j`` of ``rows`` (bias last) refined against the background row ``bg``: the
    new row, and each bag's chosen windows."""
    refined = refine_difference(rows[j] - rows[bg], bags, negatives, s)
    return refined.d + rows[bg], refined.chosen
