"""``detect --images`` and ``score-vocab --images``: any number of user images, scored in
shards that are written as they finish, with every image accounted for.

A user's folder is not a curated split: it holds corrupt, empty and unreadable files, and it
can hold millions of images. So the image list is cut into shards of ``IMAGES_PER_SHARD``;
a scoring actor takes a shard, scores each image with the stage's actor (``DetectActor``,
``VocabActor``), quarantines the images it cannot decode (their reason in the manifest) and
writes, under the run's folder ``WORK/detect/_images/<key>/``:

- ``rows/part-NNNNN.parquet``: the shard's detections, every model's (``ROWS_SCHEMA``);
- ``manifest/part-NNNNN.parquet``: one row per image, done or quarantined with its reason;
- ``_done/part-NNNNN.json``: the marker. A shard with an image that could not be *read*
  (storage) gets no marker, so the next run does it again.

``key`` is a fingerprint of the image list and the models' inputs: the same command resumes
the same run and skips its finished shards. The driver holds counts, never rows; the final
``detections.parquet`` / ``detections.json`` per model are streamed from the parts.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pyarrow as pa

from pipeline import lineage
from pipeline.detect.fanout import actor_count
from pipeline.detect.outputs import COCO_PER_IMAGE, ROWS_SCHEMA, write_from_parts
from pipeline.failures import RETRYABLE, StageFailed, held_for_a_test, quarantine_reason
from pipeline.io import storage
from pipeline.io.ray_env import cpus_per_consumer, ensure_ray, remote_args
from pipeline.workdir import WorkDir

IMAGES_PER_SHARD = 32
IMAGE_MANIFEST_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("image_url", pa.string()),
        ("shard", pa.int32()),
        ("status", pa.string()),  # done | quarantined
        ("reason", pa.string()),
        ("detections", pa.int32()),
    ]
)


def part(run_dir: str, kind: str, shard: int, ext: str = "parquet") -> str:
    return storage.join(run_dir, kind, f"part-{shard:05d}.{ext}")


def _score_one(inner, url: str, rows_schema: pa.Schema) -> tuple[pa.Table | None, str]:
    """The image's rows, or None and why it is quarantined; a bug raises."""
    try:
        rows = inner({"image_id": [storage.stem(url)], "image_url": [url], "boxes": [None]})
        return pa.Table.from_pydict(rows, schema=rows_schema), ""
    except Exception as exc:
        reason = quarantine_reason(exc)
        if reason is None:
            raise  # a bug: the stage fails, with its traceback
        return None, reason


def score_shard(inner, shard: int, urls: list[str], run_dir: str, rows_schema) -> dict:
    """Score and write one shard; its counts."""
    tables, manifest = [], []
    for url in urls:
        table, reason = _score_one(inner, url, rows_schema)
        if table is not None:
            tables.append(table)
        manifest.append(
            {
                "image_id": storage.stem(url),
                "image_url": url,
                "shard": shard,
                "status": "quarantined" if reason else "done",
                "reason": reason,
                "detections": table.num_rows if table is not None else 0,
            }
        )
    rows = pa.concat_tables(tables) if tables else rows_schema.empty_table()
    storage.write_table(part(run_dir, "rows", shard), rows)
    storage.write_table(
        part(run_dir, "manifest", shard),
        pa.Table.from_pylist(manifest, schema=IMAGE_MANIFEST_SCHEMA),
    )
    pending = sum(r["reason"].startswith(RETRYABLE) for r in manifest)
    counts = {
        "shard": shard,
        "done": sum(r["status"] == "done" for r in manifest),
        "quarantined": sum(r["status"] != "done" for r in manifest),
        "pending": pending,
        "reasons": Counter(r["reason"].split(":")[0] for r in manifest if r["reason"]),
    }
    if not pending:  # an unreadable image: the shard is done again by the next run
        storage.write_text(part(run_dir, "_done", shard, "json"), json.dumps(counts))
    return counts


class ShardScorer:
    """A scoring actor over shards of an image list: wraps the stage's own actor."""

    def __init__(self, actor: type, kwargs: dict, run_dir: str, rows_schema: pa.Schema):
        self.inner = actor(**kwargs)
        self.run_dir, self.rows_schema = run_dir, rows_schema

    def __call__(self, batch: dict) -> dict:
        out = {"counts": []}
        for shard, urls in zip(batch["shard"], batch["urls"], strict=True):
            held_for_a_test(int(shard))
            counts = score_shard(
                self.inner, int(shard), json.loads(urls), self.run_dir, self.rows_schema
            )
            out["counts"].append(json.dumps(counts))
        return out


def shards_of(images: list[str]) -> list[list[str]]:
    return [images[i : i + IMAGES_PER_SHARD] for i in range(0, len(images), IMAGES_PER_SHARD)]


def finished_shards(run_dir: str) -> dict[int, dict]:
    got = storage.read_many(storage.find(storage.join(run_dir, "_done"), (".json",)))
    return {c["shard"]: c for c in (json.loads(v) for v in got.values())}


def score_image_list(
    images: list[str],
    run_dir: str,
    actor: type,
    kwargs: dict,
    rows_schema: pa.Schema,
    actors: int,
    gpus: bool = False,
) -> dict:
    """Score every image not yet in a finished shard of ``run_dir``; the run's counts. Fails
    (``StageFailed``, finished shards kept) while images remain unread."""
    import ray.data

    t0 = time.perf_counter()
    ensure_ray()
    shards = shards_of(sorted(images))
    before = finished_shards(run_dir)
    done = dict(before)
    todo = [{"shard": s, "urls": json.dumps(u)} for s, u in enumerate(shards) if s not in before]
    if todo:
        n_actors = actor_count(actors, len(todo), gpus)
        ds = ray.data.from_items(todo, override_num_blocks=len(todo)).map_batches(
            ShardScorer,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            fn_constructor_args=(actor, kwargs, run_dir, rows_schema),
            num_cpus=cpus_per_consumer(n_actors),
            num_gpus=1 if gpus else 0,
            **remote_args(),
        )
        for row in ds.iter_rows():  # the actors' counts: what their markers say
            counts = json.loads(row["counts"])
            if not counts["pending"]:
                done[counts["shard"]] = counts
    reasons: Counter = Counter()
    for c in done.values():
        reasons.update(c["reasons"])
    totals = {
        "images": len(images),
        "done": sum(c["done"] for c in done.values()),
        "quarantined": sum(c["quarantined"] for c in done.values()),
        "reasons": dict(reasons),
    }
    unfinished = len(shards) - len(done)
    if unfinished:
        raise StageFailed(
            f"{unfinished} of {len(shards)} shards have images that could not be read (storage "
            f"errors; see {storage.join(run_dir, 'manifest')}/); run the same command again: "
            f"the {len(done)} finished shards are kept"
        )
    totals.update(
        resumed_shards=len(before),
        manifest=storage.join(run_dir, "manifest"),
        seconds=round(time.perf_counter() - t0, 2),
    )
    return totals


def detect_image_list(
    work: str,
    names: list[str],
    images: list[str],
    actor: type,
    kwargs: dict,
    actors: int,
    gpus: bool,
    draw: int,
    key: dict,
    coco_per_image: int = COCO_PER_IMAGE,
) -> dict[str, dict]:
    """Score ``images`` (shards resumed under the run's folder, ``key`` naming the run) and
    write each model's ``images`` outputs; a summary per model."""
    run_dir = WorkDir(work).detections("_images", lineage.fingerprint(key))
    totals = score_image_list(images, run_dir, actor, kwargs, ROWS_SCHEMA, actors, gpus)
    parts = storage.find(storage.join(run_dir, "rows"), (".parquet",))
    urls = {storage.stem(u): u for u in images}
    return {
        name: {
            "detections": write_from_parts(work, name, "images", parts, urls, draw, coco_per_image),
            **totals,
        }
        for name in names
    }
