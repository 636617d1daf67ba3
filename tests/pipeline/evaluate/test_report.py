from pipeline.evaluate.report import ablation_table, category_table, format_table


def _cats(aps: dict) -> list[dict]:
    sets = {"b1": "B", "b2": "B", "a1": "A", "a2": "A"}
    return [
        {"wnid": w, "name": w.upper(), "set": sets[w], "ap": ap, "gt": 3, "detections": 5}
        for w, ap in aps.items()
    ]


def test_categories_held_out_first_each_group_best_first_by_the_key_row():
    metrics = {
        "classifier": {"categories": _cats({"b1": 0.1, "b2": 0.2, "a1": 0.3, "a2": 0.4})},
        "knn-3": {"categories": _cats({"b1": 0.5, "b2": 0.4, "a1": 0.1, "a2": None})},
    }
    page = category_table(metrics, "knn-3")
    order = [page.index(f"<td>{n}</td>") for n in ("A1", "A2", "B1", "B2")]
    assert order == sorted(order)  # A: 0.1 then none; B: 0.5 then 0.4
    assert "<th>knn-3</th>" in page and "—" in page


def test_rows_link_their_detections_and_metrics():
    rows = [{"name": "knn-3", "map_heldout": 0.25, "map_trained": None, "map_all": 0.5}]
    page = ablation_table(rows, "val2")
    assert 'href="../detect/knn-3/val2/detections.json"' in page
    assert 'href="../evaluate/knn-3/val2/metrics.json"' in page
    assert "<td>25.0</td><td>—</td><td>50.0</td>" in page
    assert format_table(rows).splitlines()[1].split() == ["knn-3", "25.0", "—", "50.0"]
