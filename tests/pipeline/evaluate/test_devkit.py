import numpy as np
import pytest

from bench.evaluate import per_detection_fp_shares, per_detection_fp_type
from pipeline.evaluate.devkit import (
    ERROR_DEPTHS,
    average_precision,
    evaluate_detections,
    false_positive_types,
    fp_types,
    iou_thresholds,
    match,
    top_false_positives,
)

BIG = np.array([[0, 0, 99, 99]], float)


def test_small_objects_get_a_lower_threshold():
    # 10 x 10 box: 100 / (20 * 20) = 0.25; 100 x 100 box: capped at 0.5
    np.testing.assert_allclose(
        iou_thresholds(np.array([[0, 0, 9, 9], [0, 0, 99, 99]])), [0.25, 0.5]
    )
    det = np.array([[0, 0, 9, 14]], float)  # IoU with the 10 x 10 box: 100 / 150 = 0.67
    assert match(det, np.array([[0, 0, 9, 9]], float)).tolist() == [True]
    det = np.array([[0, 0, 9, 29]], float)  # IoU 100 / 300 = 0.33: >= 0.25 passes
    assert match(det, np.array([[0, 0, 9, 9]], float)).tolist() == [True]
    assert match(np.array([[0, 0, 99, 299]], float), BIG).tolist() == [False]  # 0.33 < 0.5


def test_duplicates_match_a_second_unmatched_object_not_the_first():
    gt = np.array([[0, 0, 99, 99], [10, 0, 109, 99]], float)  # two overlapping objects
    det = np.array([[0, 0, 99, 99], [0, 0, 99, 99], [0, 0, 99, 99]], float)
    # first takes its own box, the duplicate takes the other (IoU 0.82), the third is a FP
    assert match(det, gt).tolist() == [True, True, False]


def test_hand_computed_ap():
    # ranks: TP, FP, TP, FP with 3 ground-truth boxes (one never found)
    # precision at the recall steps: 1/1 at 1/3, 2/3 at 2/3 -> AP = 1/3 * 1 + 1/3 * 2/3
    ap = average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0], bool), 3)
    assert ap == pytest.approx(1 / 3 + 2 / 9)
    # the monotone envelope: a later higher precision lifts the earlier recall step
    ap = average_precision(np.array([0.9, 0.8, 0.7]), np.array([0, 1, 1], bool), 2)
    assert ap == pytest.approx(0.5 * 2 / 3 + 0.5 * 2 / 3)
    assert np.isnan(average_precision(np.zeros(0), np.zeros(0, bool), 0))
    assert average_precision(np.zeros(0), np.zeros(0, bool), 2) == 0.0


def test_ties_keep_input_order():
    ap = average_precision(np.array([0.5, 0.5]), np.array([1, 0], bool), 1)
    assert ap == pytest.approx(1.0)
    ap = average_precision(np.array([0.5, 0.5]), np.array([0, 1], bool), 1)
    assert ap == pytest.approx(0.5)


def _scene(rng, n_images=40):
    gt, dets = {}, {"cat": {}}
    for i in range(n_images):
        boxes = []
        for _ in range(rng.integers(0, 4)):
            x, y = rng.integers(0, 300, 2)
            w, h = rng.integers(30, 120, 2)
            boxes.append([x, y, x + w - 1, y + h - 1])
        gt[f"img{i}"] = {"cat": np.array(boxes, float).reshape(-1, 4)}
        jitter = [np.array(b, float) + rng.normal(0, 8, 4) for b in boxes]
        noise = [[*rng.integers(0, 300, 2), *rng.integers(320, 400, 2)] for _ in range(2)]
        d = np.array(jitter + noise, float).reshape(-1, 4)
        d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 1)
        dets["cat"][f"img{i}"] = (d, rng.random(len(d)))
    return gt, dets


def test_agrees_with_pycocotools_at_iou_half():
    """Objects >= 30 px (threshold 0.5 as in COCO); COCO interpolates at 101 recall points."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dets = _scene(np.random.default_rng(0))
    ours = evaluate_detections(dets, gt, ["cat"])["cat"].ap
    images = sorted(gt)
    coco_gt = COCO()
    anns, k = [], 0
    for i, img in enumerate(images):
        for b in gt[img]["cat"]:
            k += 1
            w, h = b[2] - b[0] + 1, b[3] - b[1] + 1
            anns.append(
                {
                    "id": k,
                    "image_id": i,
                    "category_id": 1,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    coco_gt.dataset = {
        "images": [{"id": i} for i in range(len(images))],
        "annotations": anns,
        "categories": [{"id": 1}],
    }
    coco_gt.createIndex()
    results = [
        {
            "image_id": i,
            "category_id": 1,
            "score": float(s),
            "bbox": [b[0], b[1], b[2] - b[0] + 1, b[3] - b[1] + 1],
        }
        for i, img in enumerate(images)
        for b, s in zip(*dets["cat"][img], strict=True)
    ]
    coco_dt = coco_gt.loadRes(results)
    ev = COCOeval(coco_gt, coco_dt, "bbox")
    ev.params.iouThrs = np.array([0.5])
    ev.params.maxDets = [100, 100, 100]
    ev.evaluate()
    ev.accumulate()
    coco_ap = float(ev.eval["precision"][0, :, 0, 0, -1].mean())
    assert ours == pytest.approx(coco_ap, abs=0.02)


def test_false_positive_types():
    gt = {
        "i": {
            "dog": np.array([[0, 0, 49, 49]], float),
            "cat": np.array([[100, 0, 149, 49]], float),
            "car": np.array([[0, 100, 49, 149]], float),
        }
    }
    dets = {
        "dog": {
            "i": (
                np.array(
                    [
                        [0, 0, 49, 49],
                        [0, 0, 49, 70],
                        [100, 0, 149, 49],
                        [0, 100, 49, 149],
                        [300, 300, 349, 349],
                    ],
                    float,
                ),
                np.array([0.9, 0.8, 0.7, 0.6, 0.5]),
            )
        }
    }
    results = evaluate_detections(dets, gt, ["dog", "cat", "car"])
    assert results["dog"].tp.tolist() == [True, False, False, False, False]
    kinds = false_positive_types(results, gt, ["dog"], lambda w: {"cat"} if w == "dog" else set())
    assert kinds["25"] == {"loc": 0.25, "sim": 0.25, "oth": 0.25, "bg": 0.25}


def _random_case(seed: int):
    rng = np.random.default_rng(seed)
    wnids = [f"c{i}" for i in range(6)]
    gt, dets = {}, {w: {} for w in wnids}
    for k in range(40):
        image = f"i{k}"
        gt[image] = {}
        for w in rng.choice(wnids, rng.integers(0, 4), replace=False):
            xy = rng.integers(0, 200, (rng.integers(0, 3), 2))
            gt[image][w] = np.concatenate([xy, xy + rng.integers(10, 80, xy.shape)], 1).astype(
                float
            )
        for w in rng.choice(wnids, 3, replace=False):
            n = int(rng.integers(1, 60))
            xy = rng.integers(0, 220, (n, 2))
            boxes = np.concatenate([xy, xy + rng.integers(5, 90, (n, 2))], 1).astype(float)
            dets[w][image] = (boxes, rng.integers(0, 5, n) / 4)  # few scores: many ties
    groups = {w: {v for v in wnids if v != w and int(v[1]) % 2 == int(w[1]) % 2} for w in wnids}
    return dets, gt, wnids, lambda w: groups[w]


def test_false_positive_typing_equals_the_per_detection_reference_with_ties():
    """Top-N only and one IoU matrix per image: the same shares at every depth as typing every
    false positive one by one (the obvious way, ``bench/evaluate.py``'s), and the same type
    for each of them (random cases, with ties)."""
    for seed in range(4):
        dets, gt, wnids, similar = _random_case(seed)
        results = evaluate_detections(dets, gt, wnids)
        assert false_positive_types(results, gt, wnids, similar) == per_detection_fp_shares(
            results, gt, wnids, similar
        )
        wnid, image, box = top_false_positives(results, wnids, 10**9)
        fps = zip(wnid, image, box, strict=True)
        want = [per_detection_fp_type(w, i, b, gt, similar) for w, i, b in fps]
        assert fp_types(wnid, image, box, gt, similar) == want
        assert len(want) > max(ERROR_DEPTHS) or seed == 0  # the cut at the deepest depth runs
