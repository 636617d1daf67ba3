"""A user's images in resumable shards: bad files quarantined with their reason, the rest
scored; a finished shard is never redone; an unreadable image keeps its shard open."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.detect import image_list
from pipeline.detect.image_list import score_image_list
from pipeline.detect.outputs import ROWS_SCHEMA, new_rows
from pipeline.failures import StageFailed
from pipeline.io import storage
from pipeline.io.images import decode_rgb


class BoxPerImage:
    """A stand-in scoring actor: one whole-image box per image it can decode."""

    def __init__(self, fail_once: str = ""):
        self.fail_once = fail_once

    def __call__(self, batch: dict) -> dict:
        rows = new_rows()
        for image_id, url in zip(batch["image_id"], batch["image_url"], strict=True):
            if self.fail_once and os.path.exists(self.fail_once) and url.endswith("img07.png"):
                os.remove(self.fail_once)
                raise ConnectionResetError("reset by peer (injected)")
            image, _ = decode_rgb(storage.read_bytes(url), 10**6, 1, (0, 0, 0))
            h, w = image.shape[:2]
            row = {"model": "m", "image_id": image_id, "wnid": "n1", "category_id": 1,
                   "score": 1.0, "x1": 0.0, "y1": 0.0, "x2": w - 1.0, "y2": h - 1.0}  # fmt: skip
            for k, v in row.items():
                rows[k].append(v)
        return rows


@pytest.fixture
def folder(tmp_path) -> list[str]:
    d = tmp_path / "mine"
    d.mkdir()
    rgb = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
    for i in range(10):
        Image.fromarray(rgb).save(d / f"img{i:02d}.png")
    (d / "img03.png").write_bytes(b"\x89PNG garbage")  # corrupt
    (d / "img05.png").write_bytes(b"")  # empty
    return sorted(str(p) for p in d.iterdir())


def test_bad_images_are_quarantined_and_shards_resume(folder, tmp_path, monkeypatch, ray_local):
    monkeypatch.setattr(image_list, "IMAGES_PER_SHARD", 4)  # 10 images: 3 shards
    run_dir, flag = str(tmp_path / "run"), tmp_path / "fail-once"
    flag.touch()
    kwargs = {"fail_once": str(flag)}
    with pytest.raises(StageFailed, match="1 of 3 shards have images that could not be read"):
        score_image_list(folder, run_dir, BoxPerImage, kwargs, ROWS_SCHEMA, actors=1)
    first = {p.name: p.stat().st_mtime_ns for p in Path(run_dir, "rows").iterdir()}
    totals = score_image_list(folder, run_dir, BoxPerImage, kwargs, ROWS_SCHEMA, actors=1)
    assert totals["resumed_shards"] == 2
    assert (totals["done"], totals["quarantined"]) == (8, 2)
    assert totals["reasons"] == {"corrupt-image": 1, "empty-file": 1}
    after = {p.name: p.stat().st_mtime_ns for p in Path(run_dir, "rows").iterdir()}
    assert [n for n in after if after[n] != first[n]] == ["part-00001.parquet"]  # img04-07
    manifest = pq.read_table(Path(run_dir, "manifest")).to_pylist()
    assert sorted(r["image_url"] for r in manifest) == folder  # every image once
    rows = pq.read_table(Path(run_dir, "rows"))
    assert rows.num_rows == 8
    markers = [json.loads(p.read_text()) for p in Path(run_dir, "_done").iterdir()]
    assert sum(m["done"] for m in markers) == 8
