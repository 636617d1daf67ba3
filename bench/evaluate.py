"""Our ILSVRC evaluator against pycocotools on the same detections. Prints the time ratio.

A synthetic detection set (default 10,000 images, 20 categories, 1-3 objects per image, the
objects found with jittered boxes plus false positives, ~10 detections per image) is evaluated
by ``pipeline.evaluate.devkit.evaluate_detections`` and by pycocotools' ``COCOeval`` restricted to
what ours computes (IoU 0.5, one area range, 100 detections per image). Objects are >= 30 px,
where the devkit's threshold is 0.5 like COCO's, so the mAPs must agree up to the interpolation
(COCO samples 101 recall points, the devkit integrates all of them).

Then the false-positive analysis (Hoiem's types at depths 25 ... 3,200): ours (the best 3,200
false positives only, one IoU matrix per image) against the obvious way (every false positive
typed one by one, then the best taken), the same shares required.

Usage: python bench/evaluate.py [--images 10000] [--categories 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.data.boxes import iou_matrix  # noqa: E402
from pipeline.evaluate.devkit import (  # noqa: E402
    ERROR_DEPTHS,
    ERROR_TYPES,
    evaluate_detections,
    false_positive_types,
    mean_ap,
)


def per_detection_fp_type(wnid, image, box, gt, similar) -> str:
    """The obvious typing of one false positive: one IoU call per category boxed in its image."""
    best = {"loc": 0.0, "sim": 0.0, "oth": 0.0}
    for other, boxes in gt.get(image, {}).items():
        if len(boxes):
            iou = float(iou_matrix(box[None], boxes).max())
            kind = "loc" if other == wnid else "sim" if other in similar(wnid) else "oth"
            best[kind] = max(best[kind], iou)
    return next((k for k in ("loc", "sim", "oth") if best[k] >= 0.1), "bg")


def per_detection_fp_shares(results, gt, wnids, similar) -> dict:
    """The obvious false-positive analysis: every false positive typed, then the best taken."""
    fps = [(float(results[w].scores[i]), w, results[w].images[i], results[w].boxes[i])
           for w in wnids for i in np.nonzero(~results[w].tp)[0]]  # fmt: skip
    fps.sort(key=lambda f: -f[0])
    kinds = [per_detection_fp_type(w, image, box, gt, similar) for _, w, image, box in fps]
    return {str(d): {t: kinds[:d].count(t) / len(kinds[:d]) for t in ERROR_TYPES}
            for d in ERROR_DEPTHS if kinds[:d]}  # fmt: skip


def synthetic(n_images: int, n_categories: int, seed: int = 0):
    """gt[image][wnid] = boxes and dets[wnid][image] = (boxes, scores), ILSVRC pixels."""
    rng = np.random.default_rng(seed)
    gt: dict[str, dict[str, np.ndarray]] = {}
    dets: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for i in range(n_images):
        image = f"img{i:06d}"
        per_gt: dict[str, list] = {}
        per_det: dict[str, list] = {}
        for _ in range(rng.integers(1, 4)):
            c = f"c{rng.integers(n_categories):03d}"
            x, y = rng.integers(0, 400, 2)
            w, h = rng.integers(30, 200, 2)
            box = np.array([x, y, x + w - 1, y + h - 1], float)
            per_gt.setdefault(c, []).append(box)
            for _ in range(rng.integers(1, 4)):  # found, duplicated or badly localised
                per_det.setdefault(c, []).append(box + rng.normal(0, 0.12 * min(w, h), 4))
        for _ in range(rng.integers(3, 8)):  # false positives anywhere, any category
            c = f"c{rng.integers(n_categories):03d}"
            x, y = rng.integers(0, 450, 2)
            w, h = rng.integers(20, 150, 2)
            per_det.setdefault(c, []).append(np.array([x, y, x + w - 1, y + h - 1], float))
        gt[image] = {c: np.array(b) for c, b in per_gt.items()}
        for c, boxes in per_det.items():
            b = np.array(boxes)
            b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
            dets.setdefault(c, {})[image] = (b, rng.random(len(b)))
    return gt, dets


def coco_inputs(gt, dets):
    """The same data as COCO ground truth and results (bbox = [x, y, w, h], inclusive w, h)."""
    images = {img: i for i, img in enumerate(sorted(gt))}
    cats = sorted({c for per in gt.values() for c in per} | set(dets))
    cat_ids = {c: i + 1 for i, c in enumerate(cats)}
    anns = []
    for img, per in gt.items():
        for c, boxes in per.items():
            for b in boxes:
                w, h = b[2] - b[0] + 1, b[3] - b[1] + 1
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": images[img],
                        "category_id": cat_ids[c],
                        "bbox": [float(b[0]), float(b[1]), float(w), float(h)],
                        "area": float(w * h),
                        "iscrowd": 0,
                    }
                )
    dataset = {
        "images": [{"id": i} for i in images.values()],
        "annotations": anns,
        "categories": [{"id": i} for i in cat_ids.values()],
    }
    results = [
        {
            "image_id": images[img],
            "category_id": cat_ids[c],
            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0] + 1), float(b[3] - b[1] + 1)],
            "score": float(s),
        }
        for c, per in dets.items()
        for img, (boxes, scores) in per.items()
        for b, s in zip(boxes, scores, strict=True)
    ]
    return dataset, results


def run_coco(dataset, results) -> float:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.params.areaRng = [[0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.params.maxDets = [100]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][0, :, :, 0, 0]  # (recall points, categories)
    return float(np.mean([p.mean() for p in precision.T if (p > -1).all()]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--categories", type=int, default=20)
    args = ap.parse_args()
    gt, dets = synthetic(args.images, args.categories)
    n_dets = sum(len(s) for per in dets.values() for _, s in per.values())
    wnids = sorted(dets)
    dataset, results = coco_inputs(gt, dets)
    print(f"{args.images} images, {len(dataset['annotations'])} objects, {n_dets} detections")

    t0 = time.perf_counter()
    evaluated = evaluate_detections(dets, gt, wnids)
    ours = mean_ap(evaluated, wnids)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    coco = run_coco(dataset, results)
    t_coco = time.perf_counter() - t0

    print(f"ours (ILSVRC devkit protocol):   {t_ours:7.2f} s  mAP {100 * ours:.2f}")
    print(f"pycocotools (IoU 0.5, one area): {t_coco:7.2f} s  mAP {100 * coco:.2f}")
    print(f"speed-up: {t_coco / t_ours:.1f}x; mAP difference {100 * (ours - coco):+.2f} points")

    def similar(w: str) -> set[str]:  # categories of the same parity: "siblings"
        return {c for c in wnids if c != w and int(c[1:]) % 2 == int(w[1:]) % 2}

    n_fp = sum(int((~r.tp).sum()) for r in evaluated.values())
    t0 = time.perf_counter()
    shares = false_positive_types(evaluated, gt, wnids, similar)
    t_types = time.perf_counter() - t0
    t0 = time.perf_counter()
    obvious = per_detection_fp_shares(evaluated, gt, wnids, similar)
    t_obvious = time.perf_counter() - t0
    assert shares == obvious, "the false-positive shares differ"
    print(f"false-positive types of the best {max(ERROR_DEPTHS)} of {n_fp}: ours {t_types:.3f} s, "
          f"every one typed {t_obvious:.2f} s ({t_obvious / t_types:.0f}x); the same shares; "
          f"ours + AP = {(t_types + t_ours) / t_ours:.2f}x the AP alone")  # fmt: skip


if __name__ == "__main__":
    main()
