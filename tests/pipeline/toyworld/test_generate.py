import hashlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.data import layout
from pipeline.data.categories import read_categories
from pipeline.data.cls_reader import read_cls_bytes, read_cls_images
from pipeline.data.det_reader import read_det_split
from pipeline.data.hierarchy import read_hierarchy
from pipeline.data.splits import read_split
from pipeline.toyworld.generate import World, generate, read_cls_boxes, scene_task
from schemas.config import toyworld_config

CONFIG = toyworld_config("test", seed=3)  # the tiny_world fixture's config


def _digest(root: str) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    }


def test_same_output_whatever_the_number_of_workers(tiny_world, tmp_path):
    generate(str(tmp_path), CONFIG, workers=2, progress=False)
    assert _digest(str(tmp_path)) == _digest(tiny_world)


def test_other_seed_gives_another_world(tiny_world, tmp_path):
    generate(str(tmp_path), toyworld_config("test", seed=4), workers=1, progress=False)
    assert read_categories(str(tmp_path)) != read_categories(tiny_world)


def test_round_trip_through_the_readers(tiny_world):
    cats = read_categories(tiny_world)
    wnids = {c.wnid for c in cats}
    assert len(cats) == CONFIG.det_categories
    assert [c.name for c in cats] == sorted(c.name for c in cats)
    set_b = {c.wnid for c in cats[: len(cats) // 2]}

    train = read_det_split(tiny_world, "det-train", wnids, strict=True)
    assert len(train.annotations) == CONFIG.det_train_scenes
    assert {b.wnid for a in train.annotations for b in a.boxes} <= set_b
    val = read_det_split(tiny_world, "val", wnids, strict=True)
    assert len(val.annotations) == CONFIG.val1_scenes + CONFIG.val2_scenes
    val1, val2 = read_split(tiny_world, "val1"), read_split(tiny_world, "val2")
    assert len(val1) == CONFIG.val1_scenes and len(val2) == CONFIG.val2_scenes
    assert not set(val1) & set(val2)

    cls = read_cls_images(tiny_world)
    assert not cls.problems
    counts = cls.per_class()
    assert all(counts[w] == CONFIG.cls_images for w in wnids)
    leaves = set(counts) - wnids
    assert len(leaves) == CONFIG.leaf_categories
    assert all(counts[w] == CONFIG.leaf_cls_images for w in leaves)
    assert all(i.in_tar for i in cls.images if i.wnid in leaves)

    hier = read_hierarchy(tiny_world)
    assert set(hier.leaves()) == wnids | leaves


def test_boxes_exact_and_sizes_match_the_images(tiny_world):
    world = World.build(CONFIG)
    files = dict(scene_task(world, "val", 0, 4))
    val = {a.image_id: a for a in read_det_split(tiny_world, "val", strict=True).annotations}
    for i in range(4):
        name = f"ILSVRC2013_val_{i + 1:08d}"
        ann = val[name]
        image = cv2.imdecode(
            np.frombuffer(files[f"{layout.DET_VAL_IMAGES}/{name}.JPEG"], np.uint8), 1
        )
        assert image.shape[:2] == (ann.height, ann.width)
        xml = files[f"{layout.DET_VAL_BOXES}/{name}.xml"].decode()
        for b in ann.boxes:  # 0-based inclusive pixels, written and read back unchanged
            assert f"<xmin>{b.xmin}</xmin><ymin>{b.ymin}</ymin>" in xml
            assert 0 <= b.xmin <= b.xmax < ann.width and 0 <= b.ymin <= b.ymax < ann.height


def test_domain_gap(tiny_world):
    """Scenes hold several smaller objects; classification images one large one."""
    val = read_det_split(tiny_world, "val", strict=True).annotations
    fractions = [b.width * b.height / (a.width * a.height) for a in val for b in a.boxes]
    assert np.median(fractions) < 0.15
    assert np.mean([len(a.boxes) for a in val]) > 1.5
    cls = read_cls_images(tiny_world).images[0]
    image = cv2.imdecode(np.frombuffer(read_cls_bytes(cls), np.uint8), 1)
    assert CONFIG.cls_size_min <= min(image.shape[:2]) <= CONFIG.cls_size_max


def test_families_make_a_hierarchy(tiny_world):
    hier = read_hierarchy(tiny_world)
    families = hier.children["n80000000"]
    assert families and all(hier.children[f] for f in families)
    counts = Counter(len(hier.children[f]) for f in families)
    assert sum(k * v for k, v in counts.items()) == CONFIG.det_categories + CONFIG.leaf_categories


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="cls_format"):
        toyworld_config("test", cls_format="zip")
    with pytest.raises(ValueError, match="unknown size"):
        toyworld_config("huge")


def test_each_classification_image_has_its_objects_box_recorded(tiny_world):
    """The latent positive of multiple-instance learning, beside the release layouts (the
    readers above found no stray file): inside its image, and most of it."""
    cls = read_cls_images(tiny_world)
    for wnid, n in cls.per_class().items():
        boxes = read_cls_boxes(tiny_world, wnid)
        assert len(boxes) == n
    for image in cls.images[:20]:
        rgb = cv2.imdecode(np.frombuffer(read_cls_bytes(image), np.uint8), 1)
        x1, y1, x2, y2 = read_cls_boxes(tiny_world, image.wnid)[f"{image.name}.JPEG"]
        h, w = rgb.shape[:2]
        assert 0 <= x1 < x2 < w and 0 <= y1 < y2 < h
        assert (x2 - x1 + 1) * (y2 - y1 + 1) > 0.3 * w * h
