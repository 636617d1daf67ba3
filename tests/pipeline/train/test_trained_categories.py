"""Which categories' rows a detection fine-tune trains, given the windows it has."""

from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import pytest

from pipeline.data.category_sets import CategoryRoles
from pipeline.train import detector
from schemas.arrow import BACKGROUND
from schemas.config import load_config

DET = replace(load_config("configs/toyworld.yaml").train_det, oracle=True)
ROLES = CategoryRoles(["a", "b", "c", "d"], set_b=["a", "b"], held_back=[])
CATEGORIES = SimpleNamespace(wnids=("a", "b", "c", "d"))


def trained(monkeypatch, counts: dict, cfg=DET) -> list[str]:
    monkeypatch.setattr(detector, "_label_counts", lambda urls: Counter(counts))
    return detector._trained_categories([], cfg, ROLES, CATEGORIES, "cls.pt")


def test_a_category_without_windows_keeps_its_row_and_is_named(monkeypatch, capsys):
    """The imagenet-size world's oracle: a few categories of set A have no window at all."""
    got = trained(monkeypatch, {"a": 3, "b": 1, "d": 2, BACKGROUND: 9})
    assert got == ["a", "b", "d"]
    assert (
        "no training windows for 1 of 4 categories (c): their rows stay" in capsys.readouterr().out
    )
    assert trained(monkeypatch, {"a": 3, "b": 1, BACKGROUND: 9}, replace(DET, oracle=False)) == [
        "a",
        "b",
    ]


@pytest.mark.parametrize(
    "counts, missing", [({"a": 3}, BACKGROUND), ({BACKGROUND: 5}, "any of its 4 categories")]
)
def test_no_background_or_no_category_at_all_is_refused(monkeypatch, counts, missing):
    with pytest.raises(ValueError, match=f"no training windows for {missing}$"):
        trained(monkeypatch, counts)
