"""Which categories play which part: set B (with boxes), set A (without), held back."""

from __future__ import annotations

from typing import NamedTuple

from pipeline.data.categories import read_categories
from schemas.config import CategorySplit


class CategoryRoles(NamedTuple):
    detection: list[str]  # every detection category, map_det order
    set_b: list[str]  # with boxes: the first half (the paper's split), or all
    held_back: list[str]  # the last ``hold_back`` of set A: left out of training entirely


def category_roles(data: str, sets: CategorySplit) -> CategoryRoles:
    """The parts of ``data``'s categories under ``sets``, from one read of the category list."""
    det = [c.wnid for c in read_categories(data)]
    b = det if sets.set_b == "all" else det[: len(det) // 2]
    in_b = set(b)
    a = [w for w in det if w not in in_b]
    return CategoryRoles(det, b, a[len(a) - sets.hold_back :] if sets.hold_back > 0 else [])


def set_b(data: str, sets: CategorySplit) -> list[str]:
    """The categories with boxes: the first half of map_det (the paper's split), or all."""
    return category_roles(data, sets).set_b


def held_back(data: str, sets: CategorySplit) -> list[str]:
    """The last ``hold_back`` categories without boxes (map_det order): left out of training
    entirely, so that ``lsda add-categories`` can bring them in later as new categories."""
    return category_roles(data, sets).held_back
