"""Stored paths that survive a moved dataset."""

from pipeline.io import storage


def test_paths_under_the_root_are_stored_relative_and_resolved_against_a_new_root():
    for root in ("/data/ilsvrc", "/data/ilsvrc/", "s3://bucket/ilsvrc"):
        url = root.rstrip("/") + "/ILSVRC2013_DET_val/ILSVRC2013_val_00000001.JPEG"
        stored = storage.relative_to(root, url)
        assert stored == "ILSVRC2013_DET_val/ILSVRC2013_val_00000001.JPEG"
        assert storage.resolve(root, stored) == url
    moved = storage.resolve("s3://other/copy", "ILSVRC2013_DET_val/a.JPEG")
    assert moved == "s3://other/copy/ILSVRC2013_DET_val/a.JPEG"
    # outside the root, and what earlier versions stored (absolute): kept as they are
    assert storage.relative_to("/data/ilsvrc", "/elsewhere/a.JPEG") == "/elsewhere/a.JPEG"
    assert storage.relative_to("/data/ilsvrc", "/data/ilsvrc2/a.JPEG") == "/data/ilsvrc2/a.JPEG"
    assert storage.resolve("/new", "/data/ilsvrc/a.JPEG") == "/data/ilsvrc/a.JPEG"
    assert storage.resolve("/new", "s3://b/a.JPEG") == "s3://b/a.JPEG"
