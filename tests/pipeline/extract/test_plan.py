"""Shards planned by Ray tasks are today's shards: same order, same membership."""

import pyarrow as pa
import pytest

from pipeline.extract import plan as planner
from pipeline.extract.plan import mixed_order


def _class_sorted(n_classes: int, per_class: int) -> list[dict]:
    return [
        {"image_id": f"n{c:04d}/n{c:04d}_{i}", "image_url": f"u/n{c:04d}/{i}.JPEG", "problem": ""}
        for c in range(n_classes)
        for i in range(per_class)
    ]


def _today(items: list[dict], order: str, seed: int, size: int) -> list[list[str]]:
    items = sorted(items, key=lambda it: it["image_id"])
    if order == "mixed":
        items = mixed_order(items, seed)
    ids = [it["image_id"] for it in items]
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _plan(tmp_path, rows: list[dict], order: str, seed: int, size: int, pieces: int = 5):
    import ray

    step = -(-len(rows) // pieces)
    tables = [pa.Table.from_pylist(rows[i : i + step]) for i in range(0, len(rows), step)]
    refs = [ray.put(t) for t in tables]
    return planner.plan_split(
        refs, [t.num_rows for t in tables], order, seed, size, str(tmp_path / "plan")
    )


@pytest.mark.parametrize("order", ["mixed", "sorted"])
def test_planned_shards_are_todays(tmp_path, ray_local, monkeypatch, order):
    monkeypatch.setattr(planner, "ROWS_PER_MAP", 700)  # several map tasks
    monkeypatch.setattr(planner, "ROWS_PER_RANGE", 500)  # and several range files
    rows = _class_sorted(40, 60)
    plan = _plan(tmp_path, rows, order, seed=3, size=32)
    expected = _today(rows, order, 3, 32)
    assert plan.rows == 2400 and plan.shards == len(expected) == 75
    assert len(plan.files) == (5 if order == "mixed" else 1)
    got = [[r["image_id"] for r in planner.read_shard(plan.files_of(s), s)] for s in range(75)]
    assert got == expected
    other = _plan(tmp_path, list(reversed(rows)), order, seed=3, size=32)
    assert plan.sha1 == other.sha1  # the fingerprint: the inputs in plan order


def test_refused_rows_and_duplicates_are_kept_out_and_named(tmp_path, ray_local):
    rows = _class_sorted(3, 4)
    rows.append({"image_id": "n0001/n0001_2", "image_url": "u/n0001.tar", "problem": ""})
    rows.append({"image_id": "evil", "image_url": "u/n0002.tar:../evil", "problem": "unsafe: x"})
    plan = _plan(tmp_path, rows, "mixed", seed=0, size=5, pieces=2)
    assert plan.rows == 12 and plan.shards == 3
    refused = {r["image_id"]: r["problem"] for r in plan.refused.to_pylist()}
    assert refused == {
        "n0001/n0001_2": "duplicate-image: also at u/n0001/2.JPEG",
        "evil": "unsafe: x",
    }


def test_files_of_a_shard_that_straddles_two_ranges():
    plan = planner.Plan("p", [("a", 0, 10), ("b", 10, 25), ("c", 25, 25), ("d", 25, 40)], 40, 8,
                        "", planner.REFUSED_SCHEMA.empty_table())  # fmt: skip
    assert [plan.files_of(s) for s in range(5)] == [["a"], ["a", "b"], ["b"], ["b", "d"], ["d"]]


def test_nothing_to_plan_is_an_empty_plan(tmp_path):
    plan = planner.plan_split([], [], "mixed", 0, 32, str(tmp_path / "plan"))
    assert plan.rows == plan.shards == 0 and plan.files == []
