"""The same readers against a real S3 endpoint (moto server on 127.0.0.1)."""

from dataclasses import replace

from pipeline.data.categories import read_categories
from pipeline.data.cls_reader import read_cls_bytes, read_cls_images
from pipeline.data.det_reader import read_det_split
from pipeline.data.hierarchy import read_hierarchy
from pipeline.io import storage
from pipeline.toyworld.generate import generate
from schemas.config import toyworld_config


def _strip(records, root):
    return [
        replace(r, image_url=r.image_url[len(root) :], annotation_url=r.annotation_url[len(root) :])
        for r in records
    ]


def test_generator_and_readers_round_trip_on_s3(tiny_world, s3_bucket):
    root = f"{s3_bucket}/toyworld"
    generate(root, toyworld_config("test", seed=3), workers=1, progress=False)
    assert read_categories(root) == read_categories(tiny_world)
    for split in ("det-train", "val1", "val2"):
        remote = read_det_split(root, split, strict=True).annotations
        local = read_det_split(tiny_world, split, strict=True).annotations
        assert _strip(remote, root) == _strip(local, tiny_world)
    remote_cls, local_cls = read_cls_images(root), read_cls_images(tiny_world)
    assert remote_cls.per_class() == local_cls.per_class()
    tar_image = next(i for i in remote_cls.images if i.in_tar)
    local_twin = next(i for i in local_cls.images if i.name == tar_image.name)
    assert read_cls_bytes(tar_image) == read_cls_bytes(local_twin)
    assert read_hierarchy(root).leaves() == read_hierarchy(tiny_world).leaves()


def test_missing_s3_objects_are_problems(s3_bucket):
    root = f"{s3_bucket}/empty"
    storage.write_text(f"{root}/devkit/data/val1.txt", "ILSVRC2013_val_00000001\n")
    result = read_det_split(root, "val1")
    assert [p.kind for p in result.problems] == ["missing-image"]
    assert result.problems[0].url.startswith(root)
