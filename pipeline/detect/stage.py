"""``lsda detect``: score the proposals of a split (or any images) with one or more detectors.

Ray Data ``map_batches`` with an actor pool: each actor loads the detectors once. Outputs per
detector under ``WORK/detect/<name>/<split>/``: ``detections.parquet`` (image_id, wnid,
category_id, score, x1, y1, x2, y2; 0-based inclusive pixels), ``detections.json``
(COCO-style results: image_id, category_id, bbox [x, y, w, h], score) and, with ``draw``,
``drawn/<image_id>.jpg``.
"""

from __future__ import annotations

import json
import posixpath
import time

import cv2
import numpy as np
import pyarrow as pa

from pipeline.data.categories import read_categories
from pipeline.detect.postprocess import PostConfig
from pipeline.detect.scoring import MultiDetector
from pipeline.extract.proposals import selective_search
from pipeline.io import storage
from pipeline.io.images import decode_rgb
from pipeline.io.ray_env import cpus_per_consumer, ensure_ray, remote_args
from pipeline.train.data import part_files, read_parquet
from schemas.config import ExtractConfig, ScoringConfig

DETECTION_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("wnid", pa.string()),
        ("category_id", pa.int32()),
        ("score", pa.float32()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
        ("x2", pa.float32()),
        ("y2", pa.float32()),
    ]
)


def out_dir(work: str, name: str, split: str) -> str:
    return storage.join(work, "detect", name, split)


def image_and_boxes(image_url: str, boxes, mean, proposals: ExtractConfig):
    """An image to score and its windows: the stored proposals, or selective search now."""
    image, _ = decode_rgb(storage.read_bytes(image_url), proposals.max_pixels, 1, tuple(mean))
    if boxes is None or len(boxes) == 0:
        p = proposals
        boxes = selective_search(image, p.resize_width, p.max_proposals, p.min_box)
    return image, np.array(boxes, np.float32).reshape(-1, 4)  # writable, for torch


def new_rows() -> dict[str, list]:
    return {"model": [], **{f: [] for f in DETECTION_SCHEMA.names}}


def add_rows(rows, model, image_id, boxes, scores, wnids, ids: dict[str, int]) -> None:
    n = len(scores)
    rows["model"] += [model] * n
    rows["image_id"] += [str(image_id)] * n
    rows["wnid"] += wnids
    rows["category_id"] += [ids.get(x, -1) for x in wnids]
    rows["score"] += np.asarray(scores).tolist()
    for j, col in enumerate(("x1", "y1", "x2", "y2")):
        rows[col] += np.asarray(boxes)[:, j].tolist()


class DetectActor:
    """Loads the detectors once; scores a batch of images (proposals given or computed)."""

    def __init__(
        self,
        urls: dict[str, str],
        post: PostConfig,
        wnids: list[str],
        ids: dict[str, int],
        proposals: ExtractConfig,
        scoring: ScoringConfig = ScoringConfig(),
    ):
        import torch

        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        self.detector = MultiDetector(urls, post, wnids, scoring)
        self.ids, self.proposals = ids, proposals

    def __call__(self, batch: dict) -> dict:
        rows = new_rows()
        for i, image_id in enumerate(batch["image_id"]):
            image, boxes = image_and_boxes(
                str(batch["image_url"][i]), batch["boxes"][i], self.detector.mean, self.proposals
            )
            for name, (b, s, w) in self.detector.score(image, boxes).items():
                add_rows(rows, name, image_id, b, s, w, self.ids)
        return rows


def _inputs(work: str, split: str | None, images: list[str] | None):
    import ray.data

    if images:
        items = [
            {"image_id": posixpath.splitext(posixpath.basename(u))[0], "image_url": u, "boxes": []}
            for u in images
        ]
        return ray.data.from_items(items), len(items)
    urls = part_files(work, split, "proposals")
    if not urls:
        raise FileNotFoundError(f"no proposals under {work}/extract/{split}: run lsda extract")
    ds = read_parquet(urls, ["image_id", "image_url", "boxes"])
    return ds, ds.count()


def actor_count(actors: int, n_images: int, gpus: bool) -> int:
    """Scoring actors to start: with ``gpus``, no more than the cluster's GPUs (one each),
    since an actor that can never get its GPU would leave the job waiting forever."""
    n = max(1, min(actors, n_images))
    if not gpus:
        return n
    import ray

    available = int(ray.cluster_resources().get("GPU", 0))
    if available == 0:
        raise RuntimeError("--gpus: the Ray cluster has no GPU; leave out --gpus to score on CPUs")
    return min(n, available)


def score_images(
    work: str,
    split: str,
    images: list[str] | None,
    actor: type,
    kwargs: dict,
    actors: int,
    gpus: bool = False,
) -> tuple[pa.Table, int]:
    """Every image of ``split`` (or ``images``) through an actor pool of ``actor(**kwargs)``,
    one GPU per actor with ``gpus``; the rows they return, and the number of images."""
    import ray.data

    ensure_ray()
    ds, n_images = _inputs(work, split, images)
    n_actors = actor_count(actors, n_images, gpus)
    ds = ds.repartition(max(1, min(n_images // 4, 64 * n_actors)))  # work for every actor
    ds = ds.map_batches(
        actor,
        batch_size=4,
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        fn_constructor_kwargs=kwargs,
        num_cpus=cpus_per_consumer(n_actors),
        num_gpus=1 if gpus else 0,
        **remote_args(),
    )
    parts = [t for t in ds.iter_batches(batch_format="pyarrow", batch_size=None) if t.num_rows]
    table = pa.concat_tables(parts) if parts else pa.table({"model": pa.array([], pa.string())})
    return table, n_images


def write_detections(
    work: str, names, split: str, table: pa.Table, images, n_images: int, draw: int
) -> dict:
    """Each model's rows of ``table`` to its output folder; a summary per model."""
    summary = {}
    for name in names:
        mine = (
            table.filter(pa.compute.equal(table.column("model"), name)) if table.num_rows else table
        )
        mine = (
            mine.select(DETECTION_SCHEMA.names).cast(DETECTION_SCHEMA)
            if mine.num_rows
            else DETECTION_SCHEMA.empty_table()
        )
        _write(work, name, split, mine)
        if draw:
            draw_detections(work, name, split, mine, ds_urls(work, split, images), draw)
        summary[name] = {"detections": mine.num_rows, "images": n_images}
    return summary


def run_detect(
    data: str,
    work: str,
    models: dict[str, str],
    split: str | None = None,
    images: list[str] | None = None,
    post: PostConfig = PostConfig(),
    all_categories: bool = False,
    actors: int = 2,
    draw: int = 0,
    proposals: ExtractConfig = ExtractConfig(),
    overwrite: bool = False,
    scoring: ScoringConfig = ScoringConfig(),
) -> dict:
    """Score ``split``'s proposals (or ``images``) with every detector in ``models``;
    ``images`` get ``proposals``' selective search, as training's windows did."""
    split = split or "images"
    todo = {n: u for n, u in models.items() if overwrite or not finished(work, n, split)}
    if not todo:
        return {"skipped": sorted(models)}
    categories = read_categories(data)
    kwargs = {
        "urls": todo,
        "post": post,
        "wnids": None if all_categories else [c.wnid for c in categories],
        "ids": {c.wnid: c.index for c in categories},
        "proposals": proposals,
        "scoring": scoring,
    }
    t0 = time.perf_counter()
    table, n_images = score_images(work, split, images, DetectActor, kwargs, actors, scoring.gpus)
    seconds = time.perf_counter() - t0
    summary = write_detections(work, todo, split, table, images, n_images, draw)
    for s in summary.values():  # scoring, all detectors together, actor start-up included
        s.update(seconds=round(seconds, 2), images_per_s=round(n_images / seconds, 2))
    return summary


def finished(work: str, name: str, split: str) -> bool:
    return storage.exists(storage.join(out_dir(work, name, split), "_SUCCESS"))


def ds_urls(work: str, split: str, images: list[str] | None) -> dict[str, str]:
    if images:
        return {posixpath.splitext(posixpath.basename(u))[0]: u for u in images}
    urls = part_files(work, split, "proposals")
    tables = [storage.read_table(u, ["image_id", "image_url"]) for u in urls]
    return {r["image_id"]: r["image_url"] for t in tables for r in t.to_pylist()}


def _write(work: str, name: str, split: str, table: pa.Table) -> None:
    d = out_dir(work, name, split)
    storage.write_table(storage.join(d, "detections.parquet"), table)
    coco = [
        {
            "image_id": r["image_id"],
            "category_id": r["category_id"],
            "wnid": r["wnid"],
            "bbox": [r["x1"], r["y1"], r["x2"] - r["x1"] + 1, r["y2"] - r["y1"] + 1],
            "score": r["score"],
        }
        for r in table.to_pylist()
    ]
    storage.write_text(storage.join(d, "detections.json"), json.dumps(coco))
    storage.write_text(storage.join(d, "_SUCCESS"), "")


def draw_detections(
    work: str,
    name: str,
    split: str,
    table: pa.Table,
    urls: dict[str, str],
    limit: int,
    min_score: float = 0.0,
    names: dict[str, str] | None = None,
) -> list[str]:
    """Draw the detections above ``min_score`` on up to ``limit`` images (paper Figs. 4, 7)."""
    rows = [r for r in table.to_pylist() if r["score"] >= min_score]
    by_image: dict[str, list[dict]] = {}
    for r in rows:
        by_image.setdefault(r["image_id"], []).append(r)
    written = []
    for image_id in sorted(by_image)[:limit]:
        written.append(
            draw_one(work, name, split, image_id, urls[image_id], by_image[image_id], names)
        )
    return written


def draw_one(work, name, split, image_id, url, dets, names=None) -> str:
    image, _ = decode_rgb(storage.read_bytes(url), ExtractConfig.max_pixels, 1, (0, 0, 0))
    scale = max(1, 400 // max(image.shape[:2]))
    canvas = cv2.resize(
        image[..., ::-1], None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST
    ).copy()
    for d in sorted(dets, key=lambda d: -d["score"])[:10]:
        p1 = (int(d["x1"] * scale), int(d["y1"] * scale))
        p2 = (int((d["x2"] + 1) * scale) - 1, int((d["y2"] + 1) * scale) - 1)
        cv2.rectangle(canvas, p1, p2, (0, 255, 255), 2)
        label = f"{(names or {}).get(d['wnid'], d['wnid'])} {d['score']:.1f}"
        cv2.putText(
            canvas,
            label,
            (p1[0] + 2, p1[1] + 14),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            3,
            cv2.LINE_AA,
        )
        cv2.putText(
            canvas,
            label,
            (p1[0] + 2, p1[1] + 14),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    url_out = storage.join(out_dir(work, name, split), "drawn", f"{image_id}.jpg")
    storage.write_bytes(url_out, cv2.imencode(".jpg", canvas)[1].tobytes())
    return url_out
