"""Output-layer adaptation (DESIGN §1 step 3, the paper's eq. 1 and its k-NN variant).

For every category j without boxes:
    W_det[j] = W_cls[j] + (1/k) * sum_{n in NN_B(j, k)} (W_det[n] - W_cls[n])
where a row is the output layer's weights with the bias as one more column, and NN_B(j, k)
are the k categories with boxes whose l2-normalised classifier rows are nearest to j's in
Euclidean distance (ties: the earlier row wins). k >= |B| gives the global average offset;
k = 0 leaves the rows as the classifier had them. Rows are processed in chunks, so memory
stays bounded for hundreds of thousands of categories.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Adaptation:
    rows: torch.Tensor  # (len(a_rows), D + 1) adapted rows, bias last
    neighbours: torch.Tensor  # (len(a_rows), k) indices into b_rows
    distances: torch.Tensor  # (len(a_rows), k)


def with_bias(layer: torch.nn.Linear) -> torch.Tensor:
    return torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1)


def nearest(queries: torch.Tensor, keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest keys of every query by Euclidean distance of l2-normalised rows.

    Distances of unit vectors: |q - b|^2 = 2 - 2 q.b, so one matrix product per chunk.
    Ties go to the lower key index (a stable sort on the selected candidates).
    """
    q = torch.nn.functional.normalize(queries.double(), dim=1)
    b = torch.nn.functional.normalize(keys.double(), dim=1)
    d2 = (2 - 2 * q @ b.T).clamp_min(0)
    order = torch.sort(d2, dim=1, stable=True).indices[:, :k]
    return order, d2.gather(1, order).sqrt()


def adapt_rows(
    w_cls: torch.Tensor,
    w_det: torch.Tensor,
    a_rows: list[int],
    b_rows: list[int],
    k: int,
    chunk: int = 4096,
) -> Adaptation:
    """Adapted rows for ``a_rows`` from the offsets of ``b_rows`` (rows with bias columns)."""
    k = min(k, len(b_rows))
    a_idx, b_idx = torch.tensor(a_rows, dtype=torch.long), torch.tensor(b_rows, dtype=torch.long)
    cls_a = w_cls[a_idx]
    if k == 0 or len(a_rows) == 0:
        empty = torch.zeros((len(a_rows), 0))
        return Adaptation(cls_a.clone(), empty.long(), empty)
    offsets = (w_det[b_idx] - w_cls[b_idx]).double()
    rows, neighbours, distances = [], [], []
    for start in range(0, len(a_rows), chunk):
        q = cls_a[start : start + chunk]
        if k == len(b_rows):  # the global average: every category of B, no search needed
            nn_idx = torch.arange(k).expand(len(q), k)
            dist = torch.cdist(
                torch.nn.functional.normalize(q.double(), dim=1),
                torch.nn.functional.normalize(w_cls[b_idx].double(), dim=1),
            )
        else:
            nn_idx, dist = nearest(q, w_cls[b_idx], k)
        rows.append((q.double() + offsets[nn_idx].mean(1)).to(w_cls.dtype))
        neighbours.append(nn_idx)
        distances.append(dist.float())
    return Adaptation(torch.cat(rows), torch.cat(neighbours), torch.cat(distances))


def apply_rows(layer: torch.nn.Linear, rows: list[int], values: torch.Tensor) -> None:
    with torch.no_grad():
        layer.weight[rows] = values[:, :-1].to(layer.weight.dtype)
        layer.bias[rows] = values[:, -1].to(layer.bias.dtype)
