"""Deterministic samples: the same picks on every worker and every re-run, whatever the order
in which work arrives."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np


def evenly_spaced(items: Sequence, most: int) -> list:
    """At most ``most`` of ``items``, evenly spaced from the first to the last (all of them if
    there are no more): shards of class-sorted data spread this way over the vocabulary."""
    picks = np.linspace(0, len(items) - 1, num=min(len(items), most)).round().astype(int)
    return [items[i] for i in picks]


def seeded_sample(indices: Sequence[int], cap: int, seed: int, key: str) -> list[int]:
    """``indices`` if there are at most ``cap``, else ``cap`` of them drawn by ``seed`` and
    ``key`` (an image id: each image its own draw), in increasing order."""
    if len(indices) <= cap:
        return list(indices)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    return sorted(rng.choice(indices, cap, replace=False).tolist())
