"""DET train read by Ray tasks per group of synset folders: what one serial read gives."""

import json
from dataclasses import replace

import pyarrow as pa

from pipeline.data import layout
from pipeline.data.category_sets import category_roles
from pipeline.extract import inputs
from pipeline.toyworld.generate import generate
from schemas.config import CategorySplit, load_config, toyworld_config

CFG = replace(load_config("configs/toyworld.yaml").extract, train_images_per_class=0)


def test_det_train_in_folder_groups_equals_one_serial_read(
    tiny_world, tmp_path, ray_local, monkeypatch
):
    import ray

    monkeypatch.setattr(inputs, "FOLDERS_PER_TASK", 1)  # a task per synset folder
    refs, counts, problems, _ = inputs.split_inputs(
        tiny_world, str(tmp_path), "det-train", CFG, "all"
    )
    assert len(refs) > 1 and problems == []
    table = pa.concat_tables(ray.get(refs))
    assert table.num_rows == sum(counts)
    got = sorted((r["image_id"], r["image_url"], json.loads(r["boxes"])) for r in table.to_pylist())
    serial, _ = inputs.load_inputs(tiny_world, "det-train")
    assert got == sorted((it["image_id"], it["image_url"], it["boxes"]) for it in serial)


def test_a_stray_file_beside_the_synset_folders_is_named(tiny_world, tmp_path, ray_local):
    import shutil

    root = tmp_path / "world"
    shutil.copytree(tiny_world, root)
    (root / layout.DET_TRAIN_IMAGES / "loose.JPEG").write_bytes(b"x")
    _, _, problems, _ = inputs.split_inputs(str(root), str(tmp_path / "w"), "det-train", CFG, "all")
    assert [(p.kind, p.url.endswith("loose.JPEG")) for p in problems] == [("unexpected-file", True)]


def test_set_b_reads_no_det_train_folder_of_a_category_without_boxes(tmp_path, ray_local):
    """A world whose DET train holds every category's folder, as ImageNet's does: windows
    labelled for set B never read set A's folders (their objects would be background), the
    oracle's read them all."""
    import ray

    root, work = str(tmp_path / "world"), str(tmp_path / "w")
    generate(root, toyworld_config("test", seed=3, det_train_every_category=True), workers=1,
             progress=False)  # fmt: skip
    roles = category_roles(root, CategorySplit())
    set_a = sorted(set(roles.detection) - set(roles.set_b))

    def folders_read(boxes_of):
        refs, counts, problems, left_out = inputs.split_inputs(
            root, work, "det-train", CFG, boxes_of
        )
        rows = pa.concat_tables(ray.get(refs)).to_pylist()
        assert len(rows) == sum(counts) and problems == []
        return {r["image_url"].split("/")[-2] for r in rows}, left_out

    every, none_left_out = folders_read("all")
    only_b, left_out = folders_read(roles.set_b)
    assert every == set(roles.detection) and none_left_out == []
    assert only_b == set(roles.set_b) and left_out == set_a


def test_bags_sample_is_seeded_bounded_and_leaves_out_what_it_must():
    rows = [
        {"image_id": f"{w}/{i}", "wnid": w, "name": str(i), "image_url": "u", "offset": -1,
         "size": 1, "problem": ""}
        for w in ("nA", "nB", "nLeaf") for i in range(10)
    ]  # fmt: skip
    rows.append({**rows[0], "image_id": "stray", "wnid": "", "problem": "unexpected-file: x"})
    table = pa.Table.from_pylist(rows)
    out, n = inputs.sample_bags(table, ["nB"], None, 4, seed=0)
    got = out.to_pylist()
    assert n == 8 and sorted({r["wnid"] for r in got}) == ["nA", "nLeaf"]
    same, _ = inputs.sample_bags(table.take(list(range(30, -1, -1))), ["nB"], None, 4, seed=0)
    assert sorted(r["image_id"] for r in same.to_pylist()) == sorted(r["image_id"] for r in got)
    other, _ = inputs.sample_bags(table, ["nB"], None, 4, seed=1)
    assert {r["image_id"] for r in other.to_pylist()} != {r["image_id"] for r in got}
    only_a, n = inputs.sample_bags(table, ["nB"], ["nA"], 20, seed=0)
    assert n == 10 and {r["wnid"] for r in only_a.to_pylist()} == {"nA"}
