"""Extraction through a real local Ray instance, on the built-in dataset."""

import hashlib
import io
import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.data import layout
from pipeline.data.annotations import annotation_xml
from pipeline.data.category_sets import category_roles
from pipeline.extract import shard
from pipeline.extract.inputs import load_inputs
from pipeline.extract.plan import REFUSED_SCHEMA, Plan
from pipeline.extract.stage import (
    StaleWorkDir,
    _work_units,
    read_manifest,
    read_markers,
    run_extract,
)
from pipeline.extract.warp import context_padding, warp_windows
from pipeline.failures import StageFailed
from pipeline.io import storage
from pipeline.io.images import decode_rgb
from pipeline.workdir import MIL_SPLIT, WorkDir
from schemas.arrow import BACKGROUND, CLS_SCHEMA, MANIFEST_SCHEMA, PROPOSAL_SCHEMA, WINDOW_SCHEMA
from schemas.config import CategorySplit, MilConfig, load_config
from schemas.records import DataError, Problem

CFG = replace(load_config("configs/toyworld.yaml").extract, shard_size=4)


def _parts(sdir, output):
    return sorted(Path(sdir, output).glob("part-*.parquet"))


def test_local_ray_serves_its_dashboard_on_loopback_only(ray_local):
    assert ray_local._private.worker.global_worker.node.webui_url.startswith("127.0.0.1:")


def test_val1_windows_and_proposals(tiny_world, tmp_path, ray_local):
    work = str(tmp_path / "work")
    summary = run_extract(tiny_world, work, "val1", CFG, progress=False)
    sdir = WorkDir(work).extract("val1")
    assert summary["done"] == 8 and summary["quarantined"] == 0 and summary["shards"] == 2
    manifest = read_manifest(sdir)
    assert manifest.schema.equals(MANIFEST_SCHEMA)
    assert sorted(manifest.column("image_id").to_pylist()) == sorted(
        n for n in Path(tiny_world, "devkit/data/val1.txt").read_text().split() if "_" in n
    )
    props = pq.read_table(_parts(sdir, "proposals")[0])
    assert props.schema.equals(PROPOSAL_SCHEMA, check_metadata=False)
    assert json.loads(props.schema.metadata[b"lsda"])["config"]["window_size"] == 32
    windows = pq.read_table(_parts(sdir, "windows")[0]).to_pylist()
    assert pq.read_schema(_parts(sdir, "windows")[0]).equals(WINDOW_SCHEMA, check_metadata=False)
    for w in windows:
        if w["label"] == BACKGROUND:
            assert w["iou"] < 0.5
        else:
            assert w["iou"] >= 0.5 and w["label"] == w["overlap_wnid"]
    assert {w["source"] for w in windows} == {"gt", "proposal"}
    # a window re-warped from its stored box matches the stored pixels exactly
    w = next(w for w in windows if w["source"] == "proposal" and w["label"] != BACKGROUND)
    url = next(r["image_url"] for r in props.to_pylist() if r["image_id"] == w["image_id"])
    assert not url.startswith("/")  # stored relative to the dataset's root
    image, _ = decode_rgb(storage.read_bytes(storage.resolve(tiny_world, url)), 10**8, 1,
                          CFG.pixel_mean)  # fmt: skip
    again = warp_windows(image, np.array([w["box"]]), 32, context_padding(32), CFG.pixel_mean)
    assert again[0].tobytes() == w["pixels"]


def test_cls_shards(tiny_world, tmp_path, ray_local):
    work = str(tmp_path / "work")
    summary = run_extract(tiny_world, work, "cls", CFG, progress=False)
    n = 8 * 12 + 4 * 4  # the test-size world: detection + leaf categories
    assert summary["done"] == n and summary["quarantined"] == 0
    rows = [
        r for p in _parts(WorkDir(work).extract("cls"), "cls") for r in pq.read_table(p).to_pylist()
    ]
    assert len(rows) == n and all(len(r["pixels"]) == 36 * 36 * 3 for r in rows)
    assert pq.read_schema(_parts(WorkDir(work).extract("cls"), "cls")[0]).equals(
        CLS_SCHEMA, check_metadata=False
    )


def _add_val_image(root: Path, name: str, data: bytes, width: int, height: int, suffix="JPEG"):
    (root / layout.DET_VAL_IMAGES / f"{name}.{suffix}").write_bytes(data)
    xml = annotation_xml(name, "val", width, height, [])
    (root / layout.DET_VAL_BOXES / f"{name}.xml").write_text(xml)


def _encoded(mode: str, size=(60, 50), fmt="JPEG") -> bytes:
    rgb = (np.random.default_rng(0).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    img = Image.fromarray(rgb).convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def dirty_world(tiny_world, tmp_path):
    root = tmp_path / "dirty"
    shutil.copytree(tiny_world, root)
    good = _encoded("RGB")
    _add_val_image(root, "bad_corrupt", b"\xff\xd8\xff garbage", 60, 50)
    _add_val_image(root, "bad_truncated", _encoded("RGB", (300, 300))[:900], 300, 300)
    _add_val_image(root, "bad_empty", b"", 60, 50)
    _add_val_image(root, "bad_small", _encoded("RGB", (5, 5)), 5, 5)
    _add_val_image(root, "bad_large", _encoded("RGB", (700, 700)), 700, 700)
    _add_val_image(root, "bad_size", good, 61, 50)
    _add_val_image(root, "ok_alpha", _encoded("RGBA", fmt="PNG"), 60, 50, suffix="png")
    _add_val_image(root, "ok_gray", _encoded("L"), 60, 50)
    _add_val_image(root, "ok_cmyk", _encoded("CMYK"), 60, 50)
    (root / layout.DET_VAL_BOXES / "ILSVRC2013_val_00000001.xml").write_text("<annotation>")
    return root


def test_bad_inputs_are_quarantined_and_counted(dirty_world, tmp_path, ray_local):
    """7 bad of 25: over the default limit the stage fails (summary, no _SUCCESS); a re-run
    with a higher --max-bad finishes without redoing a shard."""
    cfg = replace(CFG, max_pixels=300_000)
    sdir = WorkDir(str(tmp_path / "w")).extract("val")
    with pytest.raises(StageFailed, match=r"7 of 25 inputs quarantined \(28.0% > limit 5%"):
        run_extract(str(dirty_world), str(tmp_path / "w"), "val", cfg, progress=False)
    assert not Path(sdir, "_SUCCESS").exists() and Path(sdir, "summary.json").exists()
    summary = run_extract(
        str(dirty_world), str(tmp_path / "w"), "val", cfg, progress=False, max_bad=0.3
    )
    assert summary["processed_images"] == 0 and Path(sdir, "_SUCCESS").exists()
    rows = {
        r["image_id"]: r
        for r in read_manifest(WorkDir(str(tmp_path / "w")).extract("val")).to_pylist()
    }
    assert summary["images"] == len(rows) == 16 + 9
    reasons = {k: r["reason"].split(":")[0] for k, r in rows.items() if r["status"] != "done"}
    assert reasons == {
        "bad_corrupt": "corrupt-image",
        "bad_truncated": "corrupt-image",
        "bad_empty": "empty-file",
        "bad_small": "too-small",
        "bad_large": "too-large",
        "bad_size": "size-mismatch",
        "ILSVRC2013_val_00000001": "malformed-xml",
    }
    assert rows["ok_cmyk"]["note"] == "CMYK->RGB" and rows["ok_gray"]["note"] == "L->RGB"
    assert rows["ok_alpha"]["note"].startswith("RGBA")
    assert summary["done"] + summary["quarantined"] == summary["images"]


def test_resume_redoes_only_unfinished_shards(tiny_world, tmp_path, ray_local):
    work = str(tmp_path / "work")
    run_extract(tiny_world, work, "val2", CFG, progress=False)
    sdir = WorkDir(work).extract("val2")
    kept = _parts(sdir, "proposals")[0]
    kept_mtime = kept.stat().st_mtime_ns
    Path(shard.marker_url(sdir, 1)).unlink()  # shard 1 half-written: parts but no marker
    summary = run_extract(tiny_world, work, "val2", CFG, progress=False)
    assert summary["resumed_shards"] == 1 and summary["processed_images"] == 4
    assert kept.stat().st_mtime_ns == kept_mtime
    ids = read_manifest(sdir).column("image_id").to_pylist()
    assert len(ids) == len(set(ids)) == 8
    with pytest.raises(StaleWorkDir, match="config"):
        other = replace(CFG, min_box=9)
        run_extract(tiny_world, work, "val2", other, progress=False)


def test_mil_bags_are_a_seeded_sample_of_the_categories_without_boxes(
    tiny_world, tmp_path, ray_local
):
    """``--split mil``: up to N classification images of every category without boxes (set
    A's in folders, the leaves' in tars), none of set B's; each bag the whole image and its
    proposals; a corrupt image quarantined by name; a re-run resumes every shard."""
    root = tmp_path / "world"
    shutil.copytree(tiny_world, root)
    roles = category_roles(str(root), CategorySplit())
    a = [w for w in roles.detection if w not in roles.set_b]
    names = [p.stem for p in (root / layout.CLS_TRAIN / a[0]).iterdir()]
    first = min(names, key=lambda n: hashlib.sha1(f"{CFG.seed}:{a[0]}/{n}".encode()).hexdigest())
    (root / layout.CLS_TRAIN / a[0] / f"{first}.JPEG").write_bytes(b"not an image")
    work, bags = str(tmp_path / "w"), MilConfig(images_per_category=5)
    summary = run_extract(str(root), work, MIL_SPLIT, CFG, progress=False, max_bad=0.1, bags=bags)
    sdir = WorkDir(work).extract(MIL_SPLIT)
    rows = {r["image_id"]: r for r in read_manifest(sdir).to_pylist()}
    per_wnid = Counter(i.split("/")[0] for i in rows)
    assert per_wnid == {**{w: 5 for w in a}, **{w: 4 for w in leaves(root)}}  # leaves: 4 each
    assert rows[f"{a[0]}/{first}"]["reason"].startswith("corrupt-image")
    assert summary["done"] == len(rows) - 1 and summary["quarantined"] == 1
    table = pq.read_table(_parts(sdir, "bags")).to_pylist()
    assert len(table) == summary["done"] and {r["wnid"] for r in table} == set(per_wnid)
    for r in table:
        boxes = np.asarray(r["boxes"]).reshape(-1, 4)
        assert boxes[0].tolist() == [0, 0, r["width"] - 1, r["height"] - 1]  # the whole image
        assert len(boxes) == rows[r["image_id"]]["windows"] > 1
        assert (r["offset"] >= 0) == r["image_url"].endswith(".tar")  # a member, by offset
    again = run_extract(str(root), work, MIL_SPLIT, CFG, progress=False, max_bad=0.1, bags=bags)
    assert again["processed_images"] == 0 and again["resumed_shards"] == summary["shards"]


def leaves(root: Path) -> list[str]:
    return [p.stem for p in (root / layout.CLS_TARS).glob("*.tar")]


def test_a_stage_whose_every_image_fails_fails(tiny_world, tmp_path, ray_local):
    root = tmp_path / "broken"
    shutil.copytree(tiny_world, root)
    for image in (root / layout.DET_VAL_IMAGES).iterdir():
        image.write_bytes(b"not an image")
    work = str(tmp_path / "w")
    with pytest.raises(StageFailed, match="16 of 16 inputs quarantined"):
        run_extract(str(root), work, "val", CFG, progress=False, max_bad=1.0)
    assert not Path(WorkDir(work).extract("val"), "_SUCCESS").exists()


def test_a_bug_in_a_shard_fails_the_stage_with_its_traceback(tiny_world, tmp_path, ray_local):
    """A TypeError inside selective search (a setting of the wrong type reaches it) is not
    bad data: the stage stops with one line naming the shard and where the traceback is."""
    work = str(tmp_path / "w")
    with pytest.raises(StageFailed, match=r"shard \d+ failed on .*TypeError.*_errors/part-"):
        run_extract(tiny_world, work, "val2", replace(CFG, resize_width="wide"), progress=False)
    sdir = WorkDir(work).extract("val2")
    (trace,) = Path(sdir, "_errors").glob("part-*.txt")
    assert "selective_search" in trace.read_text() and not Path(sdir, "_SUCCESS").exists()


def test_only_storage_errors_are_retried(tmp_path, monkeypatch):
    """Outside Ray: a read error is retried by the next run, a truncated tar member is
    quarantined for good, an annotation not read yet is pending, and a bug stops the shard."""
    sdir = str(tmp_path / "s")
    item = {"image_id": "a", "image_url": "s3://b/a.JPEG", "width": 1, "height": 1, "boxes": []}
    truncated = DataError(Problem("s3://b/n1.tar", "truncated-tar", "member a is truncated"))

    def reader(exc):
        def read(url):
            raise exc

        return read

    cases = [
        (ConnectionResetError("reset by peer"), "read-error: ConnectionResetError"),
        (truncated, "truncated-tar: member a is truncated"),
    ]
    for exc, reason in cases:
        monkeypatch.setattr(shard.storage, "read_bytes", reader(exc))
        (row,) = shard.process_shard(0, [item], "val", sdir, CFG, windows=False)
        assert row["reason"].startswith(reason)
    pending = {**item, "pending": "read-error: annotation s3://b/a.xml: OSError: 503"}
    (row,) = shard.process_shard(0, [pending], "val", sdir, CFG, windows=False)
    assert row["reason"].startswith("read-error: PendingInput: read-error: annotation s3://b/a.xml")
    assert json.loads(Path(shard.marker_url(sdir, 0)).read_text())["retry"] == ["a"]
    monkeypatch.setattr(shard.storage, "read_bytes", reader(TypeError("a bug")))
    with pytest.raises(shard.ShardFailed, match="TypeError: a bug"):
        shard.process_shard(1, [item], "val", sdir, CFG, windows=False)
    assert "TypeError: a bug" in Path(sdir, "_errors", "part-00001.txt").read_text()


def test_one_unreadable_object_is_quarantined(tiny_world, tmp_path, monkeypatch):
    """Outside Ray: an object-store error on one image does not lose the shard."""
    sdir = str(tmp_path / "s")
    items = [
        {"image_id": "a", "image_url": "s3://gone/a.JPEG", "width": 1, "height": 1, "boxes": []}
    ]

    def unreadable(url):
        raise PermissionError(f"AccessDenied reading {url}")

    monkeypatch.setattr(shard.storage, "read_bytes", unreadable)
    rows = shard.process_shard(0, items, "val", sdir, CFG, windows=False)
    assert rows[0]["status"] == "quarantined"
    assert rows[0]["reason"].startswith("read-error: PermissionError: AccessDenied")
    assert Path(shard.marker_url(sdir, 0)).exists()


def test_a_retry_completes_unreadable_images_and_leaves_the_rest(tiny_world, tmp_path, monkeypatch):
    """Outside Ray: two images unreadable at first; the retry processes those two alone."""
    sdir = str(tmp_path / "s")
    items = load_inputs(tiny_world, "val2")[0][:4]
    flaky = {items[1]["image_url"], items[3]["image_url"]}
    read = shard.storage.read_bytes

    def failing(url):
        if url in flaky:
            raise OSError(f"503 SlowDown reading {url}")
        return read(url)

    monkeypatch.setattr(shard.storage, "read_bytes", failing)
    shard.process_shard(0, items, "val2", sdir, CFG, windows=True)
    first = Path(shard.part_url(sdir, "proposals", 0)).stat().st_mtime_ns
    markers = read_markers(sdir)
    assert sorted(markers[0]["retry"]) == sorted(items[i]["image_id"] for i in (1, 3))
    monkeypatch.setattr(shard.storage, "read_bytes", read)
    plan = Plan("p", [("range-0", 0, 4)], 4, 4, "", REFUSED_SCHEMA.empty_table())
    (unit,) = _work_units(plan, markers)
    assert unit["attempt"] == 1 and unit["files"] == ["range-0"]
    again = [it for it in items if it["image_id"] in unit["only"]]
    assert [i["image_url"] for i in again] == sorted(flaky)
    shard.process_shard(0, again, "val2", sdir, CFG, True, attempt=1)
    manifest = pq.read_table(shard.part_url(sdir, "manifest", 0)).to_pylist()
    assert [r["status"] for r in manifest] == ["done"] * 4
    assert [r["image_id"] for r in manifest] == [i["image_id"] for i in items]
    retried = pq.read_table(shard.part_url(sdir, "proposals", 0, attempt=1))
    assert retried.num_rows == 2
    assert Path(shard.part_url(sdir, "proposals", 0)).stat().st_mtime_ns == first
    marker = read_markers(sdir)[0]
    assert marker["retry"] == [] and marker["done"] == 4 and marker["attempt"] == 1
    windows = [pq.read_table(p).num_rows for p in _parts(sdir, "windows")]
    assert sum(marker["windows_per_class"].values()) == sum(windows)
    assert _work_units(plan, read_markers(sdir)) == []


def test_extract_from_and_to_s3(tiny_world, s3_bucket, ray_local):
    from pipeline.toyworld.generate import generate
    from schemas.config import toyworld_config

    data, work = f"{s3_bucket}/data", f"{s3_bucket}/work"
    generate(data, toyworld_config("test", seed=3, det_categories=4, val1_scenes=4), progress=False)
    summary = run_extract(data, work, "val1", CFG, progress=False)
    assert summary["done"] == 4 and summary["quarantined"] == 0
    manifest = read_manifest(f"{work}/extract/val1")
    assert manifest.num_rows == 4 and manifest.column("image_url")[0].as_py().startswith("s3://")
    assert storage.read_table(f"{work}/extract/val1/windows/part-00000.parquet").num_rows > 0


def test_det_train_cap_per_class_is_deterministic_and_per_synset():
    from pipeline.extract.inputs import cap_per_class

    items = [
        {"image_id": f"{w}_{i}", "image_url": f"r/ILSVRC2013_DET_train/{w}/{w}_{i}.JPEG"}
        for w in ("n1", "n2")
        for i in range(5 if w == "n1" else 2)
    ]
    capped = cap_per_class(items, 3)
    folders = [it["image_url"].split("/")[2] for it in capped]
    assert folders.count("n1") == 3 and folders.count("n2") == 2
    assert capped == cap_per_class(list(reversed(items)), 3)
    assert cap_per_class(items, 0) == items


def _rows(sdir: str, output: str) -> list[dict]:
    rows = [r for p in _parts(sdir, output) for r in pq.read_table(p).to_pylist()]
    return sorted(rows, key=lambda r: (r["image_id"], r["source"], r["box"]))


def test_the_oracle_reuses_proposals_and_gets_the_same_windows(tiny_world, tmp_path, ray_local):
    """The oracle's windows from set B's proposals equal the ones it extracts from scratch."""
    reused, scratch = str(tmp_path / "reused"), str(tmp_path / "scratch")
    run_extract(tiny_world, reused, "val1", CFG, progress=False)
    summary = run_extract(tiny_world, reused, "val1", CFG, progress=False, oracle=True)
    alone = run_extract(tiny_world, scratch, "val1", CFG, progress=False, oracle=True)
    assert summary["proposals_reused"] and not alone["proposals_reused"]
    assert summary["windows_per_class"] == alone["windows_per_class"]
    a, b = WorkDir(reused).extract("val1", oracle=True), WorkDir(scratch).extract("val1", True)
    assert _rows(a, "windows") == _rows(b, "windows")
    assert len({r["label"] for r in _rows(a, "windows")}) > 1
