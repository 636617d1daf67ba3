import io
import tarfile

from pipeline.data import layout
from pipeline.data.cls_reader import (
    read_cls_bytes,
    read_cls_folders,
    read_cls_images,
    read_cls_tars,
)


def _tar(path, members: dict[str, bytes]):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def test_folders_per_synset(tmp_path):
    for wnid, name in (("n01", "n01_1"), ("n01", "n01_2"), ("n02", "n02_9")):
        f = tmp_path / wnid / f"{name}.JPEG"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(name.encode())
    (tmp_path / "stray.txt").write_text("?")
    index = read_cls_folders(str(tmp_path), known_wnids={"n01", "n02"})
    assert index.per_class() == {"n01": 2, "n02": 1}
    assert [p.kind for p in index.problems] == ["unexpected-file"]
    assert read_cls_bytes(index.images[0]) == b"n01_1"


def test_tar_per_synset_with_ranged_reads(tmp_path):
    _tar(tmp_path / "n03.tar", {"n03_1.JPEG": b"first", "n03_2.JPEG": b"second" * 100})
    _tar(tmp_path / "n04.tar", {"../evil.JPEG": b"x", "/abs.JPEG": b"y", "n04_1.JPEG": b"z"})
    (tmp_path / "n05.tar").write_bytes(b"this is not a tar archive" * 30)
    index = read_cls_tars(str(tmp_path))
    by_name = {i.name: i for i in index.images}
    assert set(by_name) == {"n03_1", "n03_2", "n04_1"}
    assert read_cls_bytes(by_name["n03_2"]) == b"second" * 100
    assert by_name["n03_1"].in_tar and by_name["n03_1"].wnid == "n03"
    kinds = sorted(p.kind for p in index.problems)
    assert kinds == ["bad-tar", "unsafe-tar-member", "unsafe-tar-member"]


def test_both_layouts_under_a_root(tmp_path):
    f = tmp_path / layout.CLS_TRAIN / "n01" / "a.JPEG"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"a")
    _tar(tmp_path / layout.CLS_TARS / "n02.tar", {"b.JPEG": b"b"})
    assert read_cls_images(str(tmp_path)).per_class() == {"n01": 1, "n02": 1}
    empty = read_cls_images(str(tmp_path / "nothing"))
    assert [p.kind for p in empty.problems] == ["empty-split"]
