import cv2
import numpy as np
import pyarrow as pa

from pipeline.detect.outputs import DETECTION_SCHEMA
from pipeline.evaluate.category_page import CROP, best_per_category, write_category_page


def _det(image_id, wnid, score, box):
    return dict(zip(("x1", "y1", "x2", "y2"), box, strict=True), image_id=image_id, wnid=wnid,
                category_id=0, score=score)  # fmt: skip


def test_each_held_out_category_gets_an_anchor_and_its_best_crops_right_or_wrong(tmp_path):
    urls = {}
    for i in ("im1", "im2"):
        path = tmp_path / f"{i}.jpg"
        cv2.imwrite(str(path), np.full((60, 80, 3), 128, np.uint8))
        urls[i] = str(path)
    rows = [
        _det("im1", "a1", 2.0, (10, 10, 40, 40)),  # on the object
        _det("im2", "a1", 3.0, (0, 0, 20, 20)),  # elsewhere
        _det("im1", "a1", 0.5, (50, 10, 70, 30)),
        _det("im1", "b1", 9.0, (10, 10, 40, 40)),  # a trained category: not on the page
    ]
    table = pa.Table.from_pylist(rows, schema=DETECTION_SCHEMA)
    best = best_per_category(table, {"a1", "a2"}, 2)
    assert [d["score"] for d in best["a1"]] == [3.0, 2.0] and "a2" not in best
    gt = {"im1": {"a1": np.array([[11.0, 9, 41, 40]])}}
    cats = [
        {"wnid": w, "name": w.upper(), "ap": ap, "gt": 1} for w, ap in (("a1", 0.5), ("a2", None))
    ]
    work = str(tmp_path / "work")
    url = write_category_page(work, "val2", best, cats, urls, gt, "knn-5")
    page = open(url).read()
    assert '<h2 id="a1">A1' in page and '<h2 id="a2">A2' in page
    assert "best 2, 1 on an object" in page and "no detections" in page
    strip = cv2.imread(f"{work}/report/categories/a1.jpg")
    assert strip.shape == (CROP, 2 * CROP + 4, 3)
    red, green = strip[CROP // 2, 2], strip[CROP // 2, CROP + 4 + 2]  # the frames, best first
    assert red[2] > 150 > red[1] and green[1] > 120 > green[2]
