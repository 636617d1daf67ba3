"""The built-in world laid out like ImageNet (``lsda toyworld --size imagenet``): 200
categories in class folders, uneven class counts. Extraction mixes the shards, so training
sees many classes in every minibatch and the classifier learns (before the mixing, a
class-sorted world kept it at chance)."""

import itertools
from dataclasses import replace

import pytest

from pipeline.extract.inputs import load_inputs
from pipeline.extract.stage import run_extract
from pipeline.toyworld.generate import generate
from pipeline.train.classifier import classification_categories, run_train_cls
from pipeline.train.data import CLS_READER
from pipeline.train.stream import ShardStream, configure_worker_data
from pipeline.workdir import WorkDir
from schemas.config import load_config, toyworld_config

pytestmark = pytest.mark.slow
EXTRACT = load_config("configs/toyworld.yaml").extract
CLS = replace(load_config("configs/toyworld.yaml").train_cls, epochs=8)  # as measured


@pytest.fixture(scope="module")
def sorted_world(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("sorted")
    data, work = str(root / "data"), str(root / "work")
    world = toyworld_config(
        "imagenet", cls_images=48, det_train_scenes=4, val1_scenes=4, val2_scenes=4, seed=2
    )
    generate(data, world, workers=2, progress=False)
    run_extract(data, work, "cls", EXTRACT, progress=False)
    return data, work


def test_the_listing_is_class_sorted_with_uneven_counts(sorted_world):
    data, _ = sorted_world
    items, _ = load_inputs(data, "cls")
    wnids = [it["wnid"] for it in items]
    runs = [len(list(g)) for _, g in itertools.groupby(wnids)]
    assert len(runs) == len(set(wnids)) == 200  # one run per class, as ImageNet lists
    assert min(runs) >= 27 and max(runs) <= 48 and max(runs) - min(runs) >= 10


def test_the_first_minibatches_hold_many_classes(sorted_world):
    data, work = sorted_world
    files = WorkDir(work).extract_parts("cls", "cls")
    categories, _ = classification_categories(data, files)
    rows = {w: i for i, w in enumerate(categories.wnids)}
    configure_worker_data()
    kwargs = {"rows": rows, "holdout_every": CLS.holdout_every, "holdout": False}
    for rank in range(2):  # each of 2 workers: its first 3 minibatches of 64
        stream = ShardStream(files, CLS_READER, kwargs, 0, rank, 2)
        batches = stream.endless(64, (0,), 4 * 128, "classification")
        for batch in itertools.islice(batches, 3):
            assert len(set(batch["label"].tolist())) >= 40  # 64 draws of 200 classes: ~55
        batches.close()


def test_the_classifier_learns_on_class_sorted_data(sorted_world):
    data, work = sorted_world
    summary = run_train_cls(data, work, CLS)
    print("class-sorted world, 200 categories: held-out accuracy", summary["holdout_accuracy"])
    assert summary["categories"] == 200 and summary["epoch"] == CLS.epochs
    assert summary["holdout_accuracy"] > 0.15  # chance: 0.005
