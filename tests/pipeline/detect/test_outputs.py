import pyarrow as pa

from pipeline.detect.outputs import DETECTION_SCHEMA, best_per_image


def _table(rows):
    cols = {f: [r.get(f, 0) for r in rows] for f in DETECTION_SCHEMA.names}
    return pa.table(cols, schema=DETECTION_SCHEMA)


def test_best_per_image_keeps_each_images_top_scores_ties_in_their_order():
    rows = [
        {"image_id": "b", "wnid": "n1", "score": 0.5},
        {"image_id": "a", "wnid": "n1", "score": 0.1},
        {"image_id": "b", "wnid": "n2", "score": 0.9},
        {"image_id": "a", "wnid": "n2", "score": 0.7},
        {"image_id": "b", "wnid": "n3", "score": 0.5},
        {"image_id": "a", "wnid": "n3", "score": 0.3},
    ]
    kept = best_per_image(_table(rows), 2).to_pylist()
    assert [(r["image_id"], r["wnid"]) for r in kept] == [
        ("a", "n2"), ("a", "n3"), ("b", "n2"), ("b", "n1")
    ]  # fmt: skip
    assert best_per_image(_table(rows), 0).num_rows == 6
    assert best_per_image(_table([]), 2).num_rows == 0
