"""The bags of ``lsda mil``: each held-out category's classification images' windows (from the
``mil`` extraction), as fc7 features of the detector's frozen layers 1-7, with a column of
ones. (The negatives: ``negatives.py``.)

The ``mil`` extraction stores each bag's boxes, not its pixels; windows are warped here again,
as detection does, from the image (a tar member by offset): at ImageNet's size the stored
windows of 7,404 categories x 50 images would be terabytes, their boxes a few hundred MB.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.data.cls_reader import read_cls_bytes
from pipeline.extract.proposals import selective_search
from pipeline.extract.shard import bag_boxes, shard_parts
from pipeline.extract.stage import read_markers
from pipeline.extract.warp import context_padding, warp_windows
from pipeline.io import storage
from pipeline.io.images import decode_rgb
from pipeline.mil.refine import with_ones
from pipeline.model.nets import LSDANet
from pipeline.model.preprocess import fc7_features
from pipeline.workdir import MIL_SPLIT, WorkDir
from schemas.config import ExtractConfig
from schemas.records import ClsImage

BATCH = 1024  # windows per forward pass


def fc7(model: LSDANet, windows: np.ndarray, mean) -> torch.Tensor:
    """fc7 features of uint8 (N, S, S, 3) windows, with a column of ones."""
    return with_ones(fc7_features(model, windows, mean, batch=BATCH))


def shards_of(work: str) -> dict[str, list[int]]:
    """Each category's shards in the ``mil`` extraction, from its markers (one per shard:
    the driver holds a line per category, never one per image)."""
    sdir = WorkDir(work).extract(MIL_SPLIT)
    if not storage.exists(storage.join(sdir, "_SUCCESS")):
        raise FileNotFoundError(
            f"{sdir} is not finished: run `lsda extract --split mil` first (bags of the "
            "held-out categories' classification images)"
        )
    found: dict[str, set[int]] = {}
    for shard, marker in read_markers(sdir).items():
        for wnid in marker.get("windows_per_class", {}):
            found.setdefault(wnid, set()).add(shard)
    return {w: sorted(s) for w, s in sorted(found.items())}


def bag_rows(work: str, shards: list[int], wnids: set[str]) -> list[dict]:
    """The bag rows of ``wnids`` in ``shards`` (each shard's part and its retries' parts)."""
    sdir = WorkDir(work).extract(MIL_SPLIT)
    rows = []
    for shard in shards:
        for url in shard_parts(sdir, "bags", shard):
            rows += storage.read_table(url, filters=[("wnid", "in", wnids)]).to_pylist()
    return sorted(rows, key=lambda r: r["image_id"])


def bag_image(row: dict, data: str, mean, max_pixels: int) -> np.ndarray:
    """A bag's image, read and decoded again as its extraction did."""
    wnid, name = row["image_id"].split("/", 1)
    url = storage.resolve(data, row["image_url"])
    raw = read_cls_bytes(ClsImage(wnid, name, url, row["offset"], row["size"]))
    return decode_rgb(raw, max_pixels, 1, tuple(mean))[0]


def bag_features(row: dict, data: str, model: LSDANet, mean, max_pixels: int) -> torch.Tensor:
    """One bag's windows, warped from its image again, as features (N, D + 1)."""
    image = bag_image(row, data, mean, max_pixels)
    return window_features(image, np.asarray(row["boxes"], np.float32), model, mean)


def warped(image: np.ndarray, boxes: np.ndarray, model: LSDANet, mean) -> np.ndarray:
    """The windows ``boxes`` of ``image``, warped as for training: uint8 (N, S, S, 3)."""
    size = model.input_size
    return warp_windows(image, boxes.reshape(-1, 4), size, context_padding(size), mean)


def window_features(image: np.ndarray, boxes: np.ndarray, model: LSDANet, mean) -> torch.Tensor:
    """The windows ``boxes`` of ``image``, warped as for training, as features (N, D + 1)."""
    return fc7(model, warped(image, boxes, model, mean), mean)


def image_bag(image: np.ndarray, model: LSDANet, mean, proposals: ExtractConfig) -> torch.Tensor:
    """A bag made now (``add-categories --mil``): the image's proposals and the whole image."""
    p = proposals
    found = selective_search(image, p.resize_width, p.max_proposals, p.min_box, p.ss_mode)
    h, w = image.shape[:2]
    return window_features(image, bag_boxes(found, w, h), model, mean)
