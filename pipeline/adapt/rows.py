"""Output-layer adaptation (DESIGN §1 step 3, the paper's eq. 1 and its k-NN variant).

For every category j without boxes:
    W_det[j] = W_cls[j] + (1/k) * sum_{n in NN_B(j, k)} (W_det[n] - W_cls[n])
where a row is the output layer's weights with the bias as one more column, and NN_B(j, k)
are the k categories with boxes whose classifier rows are nearest to j's: Euclidean distance
between l2-normalised fc7 weight rows, the bias left out, as in the paper (ties: the earlier
row wins). The offset moves the whole row, bias included. k >= |B| gives the global average
offset; k = 0 leaves the rows as the classifier had them. Rows are processed in chunks, so memory
stays bounded for hundreds of thousands of categories.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Adaptation:
    rows: torch.Tensor  # (len(a_rows), D + 1) adapted rows, bias last
    neighbours: torch.Tensor  # (len(a_rows), k) indices into b_rows; no columns when k >= |B|
    distances: torch.Tensor  # (len(a_rows), k)


def with_bias(layer: torch.nn.Linear) -> torch.Tensor:
    return torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1)


def nearest(queries: torch.Tensor, keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest keys of every query by Euclidean distance of l2-normalised rows."""
    return _nearest_unit(_unit(queries), _unit(keys), k)


def _unit(rows: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(rows.float(), dim=1)


def _nearest_unit(q: torch.Tensor, b: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors: |q - b|^2 = 2 - 2 q.b, so one float32 matrix product; a few spare
    candidates from ``topk`` are re-sorted by (distance, index) so that ties go to the lower
    key index (ties across more than ``k + 8`` places may not)."""
    d2 = torch.addmm(torch.full((1,), 2.0), q, b.T, alpha=-2.0).clamp_min_(0)
    vals, idx = d2.topk(min(k + 8, b.shape[0]), dim=1, largest=False)
    by_index = idx.argsort(dim=1)
    vals, idx = vals.gather(1, by_index), idx.gather(1, by_index)
    order = vals.argsort(dim=1, stable=True)[:, :k]
    return idx.gather(1, order), vals.gather(1, order).sqrt()


def adapt(
    cls_a: torch.Tensor,
    cls_b: torch.Tensor,
    det_b: torch.Tensor,
    k: int,
    chunk: int = 4096,
    out: torch.Tensor | None = None,
) -> Adaptation:
    """Adapted rows for the classifier rows ``cls_a`` from the offsets ``det_b - cls_b`` of the
    categories with boxes (rows with the bias as last column). ``out`` (float32; may be
    ``cls_a`` itself) receives the rows, so 100,000 rows of 4,097 floats need no second copy."""
    k = min(k, len(cls_b))
    if out is None:
        out = cls_a.float().clone()
    elif out is not cls_a:
        out.copy_(cls_a)
    if k == 0 or len(cls_a) == 0:
        empty = torch.zeros((len(cls_a), 0))
        return Adaptation(out, empty.long(), empty)
    offsets = det_b.float() - cls_b.float()
    keys = _unit(cls_b[:, :-1])  # neighbours by the fc7 weights alone
    neighbours, distances = [], []
    for start in range(0, len(out), chunk):
        rows = out[start : start + chunk]  # a view: adapted in place
        if k == len(cls_b):  # the global average: every category of B, nothing to record
            nn_idx = torch.zeros((len(rows), 0), dtype=torch.long)
            dist = torch.zeros((len(rows), 0))
            rows += offsets.mean(0)
        else:
            nn_idx, dist = _nearest_unit(_unit(rows[:, :-1]), keys, k)
            for j in range(k):  # one (chunk, D) gather at a time, not a (chunk, k, D) tensor
                rows += offsets[nn_idx[:, j]] / k
        neighbours.append(nn_idx)
        distances.append(dist)
    return Adaptation(out, torch.cat(neighbours), torch.cat(distances))


def adapt_rows(
    w_cls: torch.Tensor,
    w_det: torch.Tensor,
    a_rows: list[int],
    b_rows: list[int],
    k: int,
    chunk: int = 4096,
) -> Adaptation:
    """``adapt`` on rows of whole output layers (with bias columns) picked by index."""
    b_idx = torch.tensor(b_rows, dtype=torch.long)
    cls_a = w_cls[torch.tensor(a_rows, dtype=torch.long)]
    return adapt(cls_a, w_cls[b_idx], w_det[b_idx], k, chunk, out=cls_a)


def apply_rows(layer: torch.nn.Linear, rows: list[int], values: torch.Tensor) -> None:
    with torch.no_grad():
        layer.weight[rows] = values[:, :-1].to(layer.weight.dtype)
        layer.bias[rows] = values[:, -1].to(layer.bias.dtype)
