"""Which categories play which part: set B (with boxes), set A (without), held back."""

from __future__ import annotations

from pipeline.data.categories import read_categories
from schemas.config import CategorySplit


def set_b(data: str, sets: CategorySplit) -> list[str]:
    """The categories with boxes: the first half of map_det (the paper's split), or all."""
    det = [c.wnid for c in read_categories(data)]
    return det if sets.set_b == "all" else det[: len(det) // 2]


def held_back(data: str, sets: CategorySplit) -> list[str]:
    """The last ``hold_back`` categories without boxes (map_det order): left out of training
    entirely, so that ``lsda add-categories`` can bring them in later as new categories."""
    b = set(set_b(data, sets))
    a = [c.wnid for c in read_categories(data) if c.wnid not in b]
    return a[len(a) - sets.hold_back :] if sets.hold_back > 0 else []
