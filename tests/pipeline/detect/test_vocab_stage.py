"""The large-vocabulary path through local Ray at the demo size with 300 classification-only
leaf categories and 8 of the detection categories without boxes held back from every stage:
``score-vocab`` with the hierarchy, evaluation at the parents' level, ``add-categories`` (with
and without ``--mil``), and the added categories' AP against their classifier-only AP.

Smaller worlds cannot carry the claim (16 categories + 300 leaves: all-layers 0.105 held-out
mAP against the classifier's 0.173, added categories 0.108 against 0.132; docs/notes.md), so
this module pays for the demo size: about 6.5 minutes on 2 cores. Measured with this recipe,
added categories' AP as k-NN adapted rows on the detector against the same rows on the
classification network: seed 0 0.208 vs 0.178, seed 1 0.135 vs 0.115, seed 2 0.221 vs 0.204,
seed 3 0.151 vs 0.111, 0.185 vs 0.145 and 0.145 vs 0.119 (three runs: training is not
bit-reproducible, and the difference was steadier than the levels); the test runs seed 3.

That gap is printed, not asserted: CI's machine reversed it (seed 3, 2026-12-02: 0.158 vs
0.161), and on this one (2026-12-08: 0.180 vs 0.162) the adapted rows win 4 of the 8
categories, the mean carried by one. What holds with margin on both machines is asserted:
refined on their own images (``--mil``) the added categories reach 0.318 and 0.305, and over
every category without boxes (the 16 held out and the 8 added) the adapted detector beats the
classifier's rows: about 0.286 vs 0.251 there (from its printed means) and 0.297 vs 0.249
here."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.adapt.add_categories import run_add_categories
from pipeline.adapt.stage import run_adapt
from pipeline.data.category_sets import held_back, set_b
from pipeline.detect.stage import run_detect
from pipeline.detect.vocab_stage import run_score_vocab
from pipeline.evaluate.stage import run_evaluate
from pipeline.extract.stage import run_extract
from pipeline.model.checkpoints import load_model
from pipeline.toyworld.generate import generate
from pipeline.train.classifier import run_train_cls
from pipeline.train.detector import run_train_det
from pipeline.workdir import WorkDir
from schemas.config import CategorySplit, load_config, toyworld_config
from schemas.metrics import validate_detector_metrics

pytestmark = pytest.mark.slow

DET, LEAVES, HELD = 48, 300, 8  # demo size: 24 without boxes, 8 of them held back
SEED = 3
SETS = CategorySplit(hold_back=HELD)
CONFIG = "configs/toyworld.yaml"


@pytest.fixture(scope="module")
def vocab_run(tmp_path_factory, ray_local):
    """Only the stages the vocabulary needs: classifier, all-layers fine-tune, k-NN; the
    demo recipe (8 classifier epochs, 1,000 fine-tuning iterations)."""
    root = tmp_path_factory.mktemp("vocab")
    data, work = str(root / "data"), str(root / "work")
    world = toyworld_config("demo", seed=SEED, leaf_categories=LEAVES)
    generate(data, world, workers=2, progress=False)
    ext = load_config(CONFIG).extract
    for split in ("cls", "det-train", "val1", "val2"):
        run_extract(data, work, split, ext, progress=False)
    # the recipe the figures above were measured with (the demo's is longer now)
    cls_cfg = replace(load_config(CONFIG).train_cls, epochs=8)
    det_cfg = replace(load_config(CONFIG).train_det, iterations=1000)
    run_train_cls(data, work, cls_cfg, sets=SETS)
    run_train_det(data, work, det_cfg, sets=SETS)
    run_adapt(work, "all-fcB", 5)
    return data, work


def test_score_vocab_covers_the_leaves_and_the_hierarchy(vocab_run):
    data, work = vocab_run
    summary = run_score_vocab(
        data, work, WorkDir(work).model("detector-knn-5.pt"), split="val2", hierarchy=True
    )
    assert summary["categories"] == DET - HELD + LEAVES and summary["nodes"] > 0
    out = Path(work, "detect/vocab/val2")
    vocabulary = json.loads((out / "vocabulary.json").read_text())
    assert len(vocabulary) == summary["categories"] + summary["nodes"]
    wnids = set(pq.read_table(out / "detections.parquet").column("wnid").to_pylist())
    nodes = {v["wnid"] for v in vocabulary[summary["categories"] :]}
    assert wnids & nodes and wnids - nodes  # families and categories
    parent = run_evaluate(data, work, "vocab", "val2", set_b(data, SETS), level="parent")
    assert validate_detector_metrics(parent) == [] and parent["map_all"] > 0
    assert {c["wnid"] for c in parent["categories"]} <= nodes


def test_added_categories_are_detected_and_can_be_replaced(vocab_run, tmp_path):
    data, work = vocab_run
    held = held_back(data, SETS)
    for wnid in held:
        shutil.copytree(Path(data, "CLS/train", wnid), tmp_path / "new" / wnid)
    adapted = run_add_categories(work, str(tmp_path / "new"), out="detector-added.pt")
    assert sorted(adapted["added"]) == sorted(held) and adapted["refused"] == []
    run_add_categories(work, str(tmp_path / "new"), "cls.pt", out="cls-added.pt", k=0)
    mil = run_add_categories(work, str(tmp_path / "new"), out="detector-added-mil.pt",
                             mil=load_config(CONFIG).mil)  # fmt: skip
    assert mil["mil"] and mil["mil_skipped"] == []
    names = ("detector-added", "cls-added", "detector-added-mil")
    models = {n: WorkDir(work).model(f"{n}.pt") for n in names}
    run_detect(data, work, models, split="val2")
    b = set_b(data, SETS)
    got = {n: run_evaluate(data, work, n, "val2", b, held_back=held) for n in models}
    print("held-back categories, AP: adapted {:.3f}, classifier rows only {:.3f}, "
          "adapted and refined on their images (--mil) {:.3f}".format(
        *(got[n]["map_added"] for n in models)))  # fmt: skip
    print("the other categories without boxes, AP: knn-5 {:.3f}, classifier {:.3f}".format(
        *(got[n]["map_heldout"] for n in names[:2])))  # fmt: skip
    print("every category without boxes, AP: adapted {:.3f}, classifier {:.3f}".format(
        *(map_without_boxes(got[n]) for n in names[:2])))  # fmt: skip
    # LSDA's promise, where 8 categories can carry it (the module's docstring): categories
    # without boxes, added ones included, are detected better through the adapted network and
    # the k-NN offsets than by their classifier rows; and an added category refined on its own
    # classification images is detected better than either of its unrefined rows.
    assert map_without_boxes(got["detector-added"]) > map_without_boxes(got["cls-added"])
    added = {n: got[n]["map_added"] for n in names}
    assert added["detector-added-mil"] > max(added["detector-added"], added["cls-added"]) > 0
    again = run_add_categories(work, str(tmp_path / "new"), "detector-added.pt")
    assert sorted(again["replaced"]) == sorted(held) and again["added"] == []
    assert len(load_model(again["model"])[1].wnids) == DET - HELD + LEAVES + HELD


def map_without_boxes(metrics: dict) -> float:
    """Mean AP over the categories without boxes, held out and added, that have an AP."""
    aps = [c["ap"] for c in metrics["categories"] if c["set"] != "B" and c["ap"] is not None]
    return sum(aps) / len(aps)
