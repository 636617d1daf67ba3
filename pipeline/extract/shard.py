"""One extraction shard: decode, propose, label, sample and warp its images; write its files.

A shard is the unit of work and of resumption: its Parquet files are written atomically under
deterministic names, then a marker; a shard with a marker is finished. A finding about one
image (corrupt, truncated, wrong size) quarantines that image with its reason and the shard
goes on (promise 4). Any other exception is a bug, not data: the shard fails, its traceback
is written to ``_errors/part-NNNNN.txt``, and the stage stops with one line (``ShardFailed``).

An image that could not be *read* (a storage error after the client's retries, or an
annotation that could not be read when the split was listed: ``read-error``) may read fine later,
so its shard's marker lists it under ``retry``; a re-run processes only those images, writes
their outputs as ``part-NNNNN-retryA`` parts beside the shard's, and rewrites the shard's
manifest part and marker. The attempt number comes from the marker, so a retry that dies
before its marker is rewritten is redone under the same names (no duplicate rows).
"""

from __future__ import annotations

import json
import socket
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np
import pyarrow as pa

from pipeline.data.boxes import best_overlap
from pipeline.data.cls_reader import read_cls_many
from pipeline.data.sampling import seeded_sample
from pipeline.extract.proposals import selective_search
from pipeline.extract.warp import context_padding, resize_square, warp_windows
from pipeline.failures import RETRYABLE, held_for_a_test, quarantine_reason
from pipeline.io import storage
from pipeline.io.images import ImageError, decode_rgb
from pipeline.workdir import MIL_SPLIT
from schemas.arrow import (
    BACKGROUND,
    BAG_SCHEMA,
    CLS_SCHEMA,
    MANIFEST_SCHEMA,
    PROPOSAL_SCHEMA,
    WINDOW_SCHEMA,
)
from schemas.config import ExtractConfig
from schemas.records import ClsImage


class ShardFailed(RuntimeError):
    """A shard stopped on an error that is not about its data (a bug): one line, and where
    the traceback is."""


class PendingInput(OSError):
    """An input whose annotation could not be read when the split was listed: it keeps its
    place in the plan and is read again by the next run."""


def part_name(shard: int, attempt: int = 0) -> str:
    return f"part-{shard:05d}" + (f"-retry{attempt}" if attempt else "")


def part_url(split_dir: str, output: str, shard: int, attempt: int = 0) -> str:
    return storage.join(split_dir, output, f"{part_name(shard, attempt)}.parquet")


def shard_parts(split_dir: str, output: str, shard: int) -> list[str]:
    """The URLs of one output's parts of ``shard``: its part and its retries' parts."""
    fs, path = storage.get_fs(storage.join(split_dir, output))
    return [
        storage.to_url(split_dir, p) for p in sorted(fs.glob(f"{path}/{part_name(shard)}*.parquet"))
    ]


def marker_url(split_dir: str, shard: int) -> str:
    return storage.join(split_dir, "_done", f"{part_name(shard)}.json")


@dataclass
class ShardOutput:
    proposals: list[dict] = field(default_factory=list)
    windows: list[dict] = field(default_factory=list)
    cls: list[dict] = field(default_factory=list)
    bags: list[dict] = field(default_factory=list)
    manifest: list[dict] = field(default_factory=list)
    windows_per_class: Counter = field(default_factory=Counter)


def _node() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (unit tests, serial bench) the host name will do
        pass
    return socket.gethostname()


def _encode_windows(pixels: np.ndarray, encoding: str) -> list[bytes]:
    if encoding == "raw":
        return [p.tobytes() for p in pixels]
    return [
        cv2.imencode(".jpg", p[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        for p in pixels
    ]


def sample_windows(item: dict, proposals: np.ndarray, cfg: ExtractConfig) -> dict:
    """Ground-truth boxes and every foreground proposal, plus sampled background proposals,
    as window columns (without pixels)."""
    gt = np.asarray([b[1:] for b in item["boxes"]], np.float32).reshape(-1, 4)
    gt_wnids = [b[0] for b in item["boxes"]]
    best, ious = best_overlap(proposals, gt)
    fg = np.nonzero(ious >= cfg.fg_iou)[0].tolist() if len(gt) else []
    bg = np.nonzero(ious < cfg.fg_iou)[0].tolist() if len(gt) else list(range(len(proposals)))
    bg = seeded_sample(bg, cfg.bg_per_image, cfg.seed, item["image_id"])
    overlap = [gt_wnids[j] if j >= 0 else None for j in best]
    return {
        "box": np.concatenate([gt, proposals[fg + bg].reshape(-1, 4)]),
        "label": gt_wnids + [overlap[i] for i in fg] + [BACKGROUND] * len(bg),
        "iou": [1.0] * len(gt) + [float(ious[i]) for i in fg + bg],
        "overlap_wnid": gt_wnids + [overlap[i] for i in fg + bg],
        "source": ["gt"] * len(gt) + ["proposal"] * len(fg + bg),
    }


def _decode(data: bytes, cfg: ExtractConfig, min_side: int):
    return decode_rgb(data, cfg.max_pixels, min_side, cfg.pixel_mean)


def stored_proposals(split_dir: str, shard: int) -> dict[str, np.ndarray]:
    """The proposals another extraction of the same images stored for ``shard`` (its part and
    its retries' parts), by image id."""
    found: dict[str, np.ndarray] = {}
    for url in shard_parts(split_dir, "proposals", shard):
        table = storage.read_table(url, ["image_id", "boxes"])
        for image_id, boxes in zip(*table.to_pydict().values(), strict=True):
            found[image_id] = np.asarray(boxes, np.float32).reshape(-1, 4)
    return found


def process_det_image(
    item: dict,
    cfg: ExtractConfig,
    with_windows: bool,
    out: ShardOutput,
    known: dict[str, np.ndarray] | None = None,
    data_root: str = "",
):
    """Proposals (and windows) of one detection image; returns (proposals, windows, note).
    Proposals found in ``known`` (box-independent: another labelling of the same images) are
    reused, not searched again. The image's path is stored relative to ``data_root``, the
    dataset's root, so that detection finds it wherever the dataset is later."""
    if item.get("pending"):
        raise PendingInput(item["pending"])
    image, note = _decode(storage.read_bytes(item["image_url"]), cfg, cfg.min_box)
    h, w = image.shape[:2]
    if (w, h) != (item["width"], item["height"]):
        raise ImageError(
            "size-mismatch",
            f"image is {w}x{h}, its annotation says {item['width']}x{item['height']}",
        )
    props = (known or {}).get(item["image_id"])
    if props is None:
        props = selective_search(
            image, cfg.resize_width, cfg.max_proposals, cfg.min_box, cfg.ss_mode
        )
    out.proposals.append(
        {
            "image_id": item["image_id"],
            "image_url": storage.relative_to(data_root, item["image_url"]),
            "width": w,
            "height": h,
            "boxes": props.reshape(-1).tolist(),
        }
    )
    if not with_windows:
        return len(props), 0, note
    cols = sample_windows(item, props, cfg)
    size = cfg.window_size
    pixels = warp_windows(image, cols["box"], size, context_padding(size), cfg.pixel_mean)
    encoded = _encode_windows(pixels, cfg.window_encoding)
    for i, data in enumerate(encoded):
        out.windows.append(
            {
                "image_id": item["image_id"],
                "label": cols["label"][i],
                "iou": cols["iou"][i],
                "overlap_wnid": cols["overlap_wnid"][i],
                "source": cols["source"][i],
                "box": cols["box"][i].tolist(),
                "size": size,
                "encoding": cfg.window_encoding,
                "pixels": data,
            }
        )
    out.windows_per_class.update(cols["label"])
    return len(props), len(encoded), note


def prefetch_cls(items: list[dict]) -> dict[str, bytes | Exception]:
    """Every image of a cls shard in one batched call (concurrent ranged GETs on object
    storage), by image id; a read that failed is its exception."""
    images = [
        ClsImage(it["wnid"], it["name"], it["image_url"], it["offset"], it["size"]) for it in items
    ]
    got = read_cls_many(images)
    return {it["image_id"]: got[i] for i, it in enumerate(items)}


def process_cls_image(item: dict, cfg: ExtractConfig, out: ShardOutput, data: bytes | Exception):
    if isinstance(data, Exception):
        raise data
    rgb, note = _decode(data, cfg, 1)
    pixels = resize_square(rgb, cfg.cls_size)
    out.cls.append(
        {
            "wnid": item["wnid"],
            "name": item["name"],
            "image_url": item["image_url"],
            "size": cfg.cls_size,
            "pixels": pixels.tobytes(),
        }
    )
    return 0, 1, note


def bag_boxes(proposals: np.ndarray, width: int, height: int) -> np.ndarray:
    """A bag's windows: the whole image first (a classification image may be all object),
    then the proposals without it."""
    whole = np.array([[0, 0, width - 1, height - 1]], np.float32)
    rest = proposals[~(proposals == whole).all(1)]
    return np.concatenate([whole, rest.reshape(-1, 4)])


def process_bag_image(
    item: dict, cfg: ExtractConfig, out: ShardOutput, data: bytes | Exception, data_root: str
):
    """A ``mil`` image: its proposals and the whole image, as one bag of its category."""
    if isinstance(data, Exception):
        raise data
    image, note = _decode(data, cfg, cfg.min_box)
    h, w = image.shape[:2]
    props = selective_search(image, cfg.resize_width, cfg.max_proposals, cfg.min_box, cfg.ss_mode)
    boxes = bag_boxes(props, w, h)
    out.bags.append(
        {
            "image_id": item["image_id"],
            "wnid": item["wnid"],
            "image_url": storage.relative_to(data_root, item["image_url"]),
            "offset": item["offset"],
            "size": item["size"],
            "width": w,
            "height": h,
            "boxes": boxes.reshape(-1).tolist(),
        }
    )
    out.windows_per_class[item["wnid"]] += len(boxes)  # which shards hold a category's bags
    return len(props), len(boxes), note


def process_shard(
    shard: int,
    items: list[dict],
    split: str,
    split_dir: str,
    cfg: ExtractConfig,
    windows: bool,
    params: dict | None = None,
    attempt: int = 0,
    proposals_from: str | None = None,
    data_root: str = "",
) -> list[dict]:
    """Process and write one shard (``attempt`` > 0: a retry of some of its images); return
    the manifest rows of ``items``, one per image.

    ``params`` (the run's settings) go into every Parquet file's metadata; ``proposals_from``
    is an extraction of the same images whose proposals are reused; ``data_root`` is the
    dataset's root, that stored image paths are relative to."""
    cv2.setNumThreads(1)  # one task per core: OpenCV's own threads only contend
    held_for_a_test(shard)
    out = ShardOutput()
    node = _node()
    fetched = prefetch_cls(items) if split in ("cls", MIL_SPLIT) else {}
    known = stored_proposals(proposals_from, shard) if proposals_from else None
    for item in items:
        t0 = time.perf_counter()
        row = {
            "image_id": item["image_id"],
            "image_url": item["image_url"],
            "split": split,
            "shard": shard,
            "status": "done",
            "reason": "",
            "note": "",
            "proposals": 0,
            "windows": 0,
            "node": node,
        }
        try:
            if split == "cls":
                data = fetched[item["image_id"]]
                n_props, n_win, note = process_cls_image(item, cfg, out, data)
            elif split == MIL_SPLIT:
                data = fetched[item["image_id"]]
                n_props, n_win, note = process_bag_image(item, cfg, out, data, data_root)
            else:
                n_props, n_win, note = process_det_image(item, cfg, windows, out, known, data_root)
            row.update(proposals=n_props, windows=n_win, note=note)
        except Exception as exc:
            reason = quarantine_reason(exc)
            if reason is None:
                _fail(split_dir, shard, item, exc)
            row.update(status="quarantined", reason=reason)
        row["seconds"] = time.perf_counter() - t0
        out.manifest.append(row)
    write_shard(split_dir, shard, out, split, windows, params or {}, attempt)
    return out.manifest


def _fail(split_dir: str, shard: int, item: dict, exc: Exception) -> None:
    """Write the traceback beside the shard's outputs and stop the shard."""
    url = storage.join(split_dir, "_errors", f"{part_name(shard)}.txt")
    text = f"{item['image_url']}\n" + "".join(traceback.format_exception(exc))
    try:
        storage.write_text(url, text)
    except Exception:  # the error itself matters more than where its traceback goes
        url = "(not written)"
    raise ShardFailed(
        f"shard {shard} failed on {item['image_url']}: {type(exc).__name__}: {exc} "
        f"(a bug, not bad data; traceback: {url})"
    ) from exc


def _write_table(url: str, rows: list[dict], schema: pa.Schema, metadata: dict) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    storage.write_table(
        url, table.replace_schema_metadata({b"lsda": json.dumps(metadata).encode()})
    )


def write_shard(
    split_dir: str,
    shard: int,
    out: ShardOutput,
    split: str,
    windows: bool,
    params: dict,
    attempt: int = 0,
) -> None:
    """Every output of the shard (or of a retry), then its marker: a shard without marker is
    redone."""
    if split == "cls":
        _write_table(part_url(split_dir, "cls", shard, attempt), out.cls, CLS_SCHEMA, params)
    elif split == MIL_SPLIT:
        _write_table(part_url(split_dir, "bags", shard, attempt), out.bags, BAG_SCHEMA, params)
    else:
        url = part_url(split_dir, "proposals", shard, attempt)
        _write_table(url, out.proposals, PROPOSAL_SCHEMA, params)
        if windows:
            url = part_url(split_dir, "windows", shard, attempt)
            _write_table(url, out.windows, WINDOW_SCHEMA, params)
    manifest, per_class = out.manifest, out.windows_per_class
    if attempt:
        manifest, per_class = _merge_retry(split_dir, shard, out)
    _write_table(part_url(split_dir, "manifest", shard), manifest, MANIFEST_SCHEMA, params)
    marker = {
        "shard": shard,
        "images": len(manifest),
        **Counter(r["status"] for r in manifest),
        "windows_per_class": dict(per_class),
        "retry": [r["image_id"] for r in manifest if r["reason"].startswith(RETRYABLE)],
        "attempt": attempt,
        "reasons": Counter(r["reason"].split(":")[0] for r in manifest if r["reason"]),
        "proposals": sum(r["proposals"] for r in manifest if r["status"] == "done"),
    }
    storage.write_text(marker_url(split_dir, shard), json.dumps(marker))


def _merge_retry(split_dir: str, shard: int, out: ShardOutput) -> tuple[list[dict], Counter]:
    """The shard's manifest with the retried images' rows replaced, and its window counts
    with the retry's added (the marker still holds the counts from before this attempt)."""
    retried = {r["image_id"]: r for r in out.manifest}
    old = storage.read_table(part_url(split_dir, "manifest", shard)).to_pylist()
    previous = json.loads(storage.read_text(marker_url(split_dir, shard)))
    per_class = Counter(previous.get("windows_per_class", {}))
    per_class.update(out.windows_per_class)
    return [retried.get(r["image_id"], r) for r in old], per_class
