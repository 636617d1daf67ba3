"""The parallel cls index: the serial readers' images, tars cached by size and mtime/ETag."""

import io
import os
import tarfile
from pathlib import Path

import pyarrow as pa

from pipeline.data import layout
from pipeline.data.cls_index import groups, index_cls, list_sources
from pipeline.data.cls_reader import read_cls_images


def _tar(path: Path, names: list[str]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(name)
            t.addfile(info, io.BytesIO(name.encode()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def _world(root: Path) -> None:
    for wnid in ("n01", "n02", "n03"):
        _tar(root / layout.CLS_TARS / f"{wnid}.tar", [f"{wnid}_{i}.JPEG" for i in range(5)])
    for wnid, names in (("n00", ["a", "b"]), ("n02", ["n02_1", "n02_9"])):  # n02_1: in the tar too
        for name in names:
            f = root / layout.CLS_TRAIN / wnid / f"{name}.JPEG"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(name.encode())


def _index(root: Path, index_dir: Path):
    import ray

    refs, counts, problems = index_cls(str(root), str(index_dir))
    table = pa.concat_tables(ray.get(refs))
    return table, counts, problems


def test_the_index_holds_what_the_serial_readers_find(tmp_path, ray_local):
    _world(tmp_path / "data")
    table, counts, problems = _index(tmp_path / "data", tmp_path / "index")
    assert problems == [] and sum(c["rows"] for c in counts) == table.num_rows
    ids = sorted(table.column("image_id").to_pylist())
    serial = read_cls_images(str(tmp_path / "data"))
    assert ids == sorted(f"{i.wnid}/{i.name}" for i in serial.images)
    assert ids.count("n02/n02_1") == 2  # folder and tar: deduplicated by the planner


def test_a_changed_tar_is_indexed_again_and_nothing_else(tmp_path, ray_local):
    data, index_dir = tmp_path / "data", tmp_path / "index"
    _world(data)

    def scanned() -> tuple[int, int]:
        _, counts, _ = _index(data, index_dir)
        return sum(c["tars_scanned"] for c in counts), sum(c["tar_bytes_read"] for c in counts)

    assert scanned()[0] == 3
    assert scanned() == (0, 0)
    changed = data / layout.CLS_TARS / "n03.tar"
    _tar(changed, [f"n03_{i}.JPEG" for i in range(7)])
    os.utime(changed, (1, 1))
    assert scanned()[0] == 1
    assert len(list(index_dir.glob("n03-*.parquet"))) == 1  # the stale index is gone
    table, _, _ = _index(data, index_dir)
    assert sum(w == "n03" for w in table.column("wnid").to_pylist()) == 7


def test_groups_keep_a_synset_whole(tmp_path):
    _world(tmp_path)
    sources, _ = list_sources(str(tmp_path))
    assert [(s.wnid, s.kind) for s in sources][:3] == [
        ("n00", "folder"),
        ("n01", "tar"),
        ("n02", "folder"),
    ]
    for g in groups(sources, per_task=1):
        assert len({s.wnid for s in g}) == 1
    assert [len(g) for g in groups(sources, per_task=1)] == [1, 1, 2, 1]


def test_symlinked_class_folders_and_tars_are_read_as_what_they_point_to(tmp_path):
    """An ImageNet subset built with ``ln -s``: linked class folders, a linked tar, a linked
    image; a link back to its own folder is named as a loop and a dangling link as broken."""
    from pipeline.data.cls_index import index_sources

    full, subset = tmp_path / "full", tmp_path / "subset"
    _world(full)
    classes = subset / layout.CLS_TRAIN
    classes.mkdir(parents=True)
    (classes / "n00").symlink_to(full / layout.CLS_TRAIN / "n00", target_is_directory=True)
    (classes / "n02").symlink_to(full / layout.CLS_TRAIN / "n02", target_is_directory=True)
    (subset / layout.CLS_TARS).mkdir()
    (subset / layout.CLS_TARS / "n01.tar").symlink_to(full / layout.CLS_TARS / "n01.tar")
    (classes / "n04").mkdir()
    (classes / "n04" / "x.JPEG").symlink_to(full / layout.CLS_TRAIN / "n00" / "a.JPEG")
    (classes / "n04" / "again").symlink_to(classes / "n04", target_is_directory=True)
    (classes / "n04" / "gone.JPEG").symlink_to(tmp_path / "nowhere.JPEG")
    sources, problems = list_sources(str(subset))
    assert problems == []
    assert [(s.wnid, s.kind) for s in sources] == [
        ("n00", "folder"), ("n01", "tar"), ("n02", "folder"), ("n04", "folder")
    ]  # fmt: skip
    table, counts = index_sources(sources, str(tmp_path / "index"), set())
    rows = table.to_pylist()
    images = sorted(r["image_id"] for r in rows if not r["problem"])
    assert images == ["n00/a", "n00/b", *[f"n01/n01_{i}" for i in range(5)],
                      "n02/n02_1", "n02/n02_9", "n04/x"]  # fmt: skip
    refused = {
        r["image_url"].rsplit("/", 1)[1]: r["problem"].split(":")[0] for r in rows if r["problem"]
    }
    assert refused == {"again": "symlink-loop", "gone.JPEG": "broken-link"}
