import pytest

from pipeline.data import det_reader, layout
from pipeline.data.annotations import annotation_xml
from schemas.records import Box, DataError

KNOWN = {"n01", "n02"}


def _val_image(root, name, boxes, width=40, height=30, xml=None):
    img = root / layout.DET_VAL_IMAGES / f"{name}.JPEG"
    ann = root / layout.DET_VAL_BOXES / f"{name}.xml"
    img.parent.mkdir(parents=True, exist_ok=True)
    ann.parent.mkdir(parents=True, exist_ok=True)
    img.write_bytes(b"jpeg")  # readers of this stage do not decode
    if xml is not False:
        ann.write_text(xml or annotation_xml(name, "val", width, height, boxes))
    return img, ann


@pytest.fixture
def val_root(tmp_path):
    _val_image(tmp_path, "ok1", [Box("n01", 0, 0, 39, 29)])
    _val_image(tmp_path, "ok2", [])
    _val_image(tmp_path, "outside", [Box("n01", 0, 0, 40, 10)])
    _val_image(tmp_path, "flipped", [Box("n02", 9, 0, 3, 10)])
    _val_image(tmp_path, "unknown", [Box("n99", 0, 0, 3, 3)])
    _val_image(tmp_path, "truncated", [], xml="<annotation><size><width>4")
    _val_image(tmp_path, "noxml", [], xml=False)
    orphan = tmp_path / layout.DET_VAL_BOXES / "orphan.xml"
    orphan.write_text(annotation_xml("orphan", "val", 4, 4, []))
    return tmp_path


def test_every_image_is_accounted_for(val_root):
    result = det_reader.read_det_split(str(val_root), "val", KNOWN)
    assert sorted(a.image_id for a in result.annotations) == ["ok1", "ok2"]
    kinds = {p.url.rsplit("/", 1)[-1]: p.kind for p in result.problems}
    assert kinds == {
        "outside.xml": "invalid-box",
        "flipped.xml": "invalid-box",
        "unknown.xml": "unknown-category",
        "truncated.xml": "malformed-xml",
        "noxml.JPEG": "missing-annotation",
        "orphan.xml": "missing-image",
    }
    ok1 = next(a for a in result.annotations if a.image_id == "ok1")
    assert ok1.boxes == (Box("n01", 0, 0, 39, 29),) and (ok1.width, ok1.height) == (40, 30)


def test_strict_raises_one_error_naming_the_file(val_root):
    with pytest.raises(DataError) as err:
        det_reader.read_det_split(str(val_root), "val", KNOWN, strict=True)
    assert str(val_root) in str(err.value)


def test_named_split_and_missing_listed_image(val_root):
    (val_root / "devkit/data").mkdir(parents=True)
    (val_root / "devkit/data/val1.txt").write_text("ok1 1\nghost 2\n")
    result = det_reader.read_det_split(str(val_root), "val1", KNOWN)
    assert [a.image_id for a in result.annotations] == ["ok1"]
    assert [(p.kind, "ghost" in p.url) for p in result.problems] == [("missing-image", True)]


def test_empty_split_and_missing_split_file(tmp_path):
    result = det_reader.read_det_split(str(tmp_path), "det-train")
    assert [p.kind for p in result.problems] == ["empty-split"]
    assert layout.DET_TRAIN_IMAGES in result.problems[0].url
    result = det_reader.read_det_split(str(tmp_path), "val2")
    assert [p.kind for p in result.problems] == ["missing-file"]


def test_det_train_folders_per_synset(tmp_path):
    for wnid, i in (("n01", 1), ("n02", 7)):
        img = tmp_path / layout.DET_TRAIN_IMAGES / wnid / f"{wnid}_{i}.JPEG"
        ann = tmp_path / layout.DET_TRAIN_BOXES / wnid / f"{wnid}_{i}.xml"
        img.parent.mkdir(parents=True)
        ann.parent.mkdir(parents=True)
        img.write_bytes(b"x")
        ann.write_text(annotation_xml(img.stem, wnid, 10, 10, [Box(wnid, 1, 1, 5, 5)]))
    result = det_reader.read_det_split(str(tmp_path), "det-train", KNOWN, strict=True)
    assert [(a.image_id, a.boxes[0].wnid) for a in result.annotations] == [
        ("n01_1", "n01"),
        ("n02_7", "n02"),
    ]


def test_an_unreadable_annotation_is_pending_and_a_deleted_one_missing(val_root, monkeypatch):
    """A read error keeps the image as pending (read again later); an XML deleted since the
    listing is a missing annotation."""
    real = det_reader.storage.read_many

    def flaky(urls):
        got = real(urls)
        got[next(u for u in urls if u.endswith("ok2.xml"))] = PermissionError("AccessDenied")
        got[next(u for u in urls if u.endswith("ok1.xml"))] = FileNotFoundError("gone")
        return got

    monkeypatch.setattr(det_reader.storage, "read_many", flaky)
    result = det_reader.read_det_split(str(val_root), "val", KNOWN)
    (pending,) = result.pending
    assert pending.url.endswith("ok2.JPEG") and pending.kind == "read-error"
    assert "ok2.xml: PermissionError: AccessDenied" in pending.message
    assert "read-error" not in {p.kind for p in result.problems}
    missing = next(p for p in result.problems if p.url.endswith("ok1.xml"))
    assert missing.kind == "missing-annotation"
    with pytest.raises(OSError, match="1 annotations could not be read"):
        result.raise_pending()
