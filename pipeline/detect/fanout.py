"""Every image of an extracted split through a pool of scoring actors, with Ray Data: the
fan-out ``detect`` and ``score-vocab`` share (a user's images: ``image_list``)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from pipeline.extract.proposals import selective_search
from pipeline.io import storage
from pipeline.io.images import decode_rgb
from pipeline.io.ray_env import cpus_per_consumer, ensure_ray, remote_args
from pipeline.train.data import read_parquet
from pipeline.workdir import WorkDir
from schemas.config import ExtractConfig


def image_and_boxes(image_url: str, boxes, mean, proposals: ExtractConfig):
    """An image to score and its windows: the stored proposals, or selective search now."""
    image, _ = decode_rgb(storage.read_bytes(image_url), proposals.max_pixels, 1, tuple(mean))
    if boxes is None or len(boxes) == 0:
        p = proposals
        boxes = selective_search(image, p.resize_width, p.max_proposals, p.min_box)
    return image, np.array(boxes, np.float32).reshape(-1, 4)  # writable, for torch


def images_ahead(batch: dict, mean, proposals: ExtractConfig) -> Iterator[tuple]:
    """(image id, image, windows) of each image of an actor's batch, the next one read and
    decoded (and for a user's image, its proposals found) on a thread while the caller scores
    this one: storage and the CPU's work overlap the network's."""
    ids = batch["image_id"]

    def load(i: int):
        return image_and_boxes(str(batch["image_url"][i]), batch["boxes"][i], mean, proposals)

    with ThreadPoolExecutor(1, thread_name_prefix="lsda-read") as pool:
        ahead = pool.submit(load, 0) if len(ids) else None
        for i in range(len(ids)):
            image, boxes = ahead.result()
            ahead = pool.submit(load, i + 1) if i + 1 < len(ids) else None
            yield ids[i], image, boxes


def _resolve_urls(batch: pa.Table, data: str) -> pa.Table:
    urls = [storage.resolve(data, u) for u in batch.column("image_url").to_pylist()]
    return batch.set_column(batch.schema.get_field_index("image_url"), "image_url", pa.array(urls))


def _inputs(data: str, work: str, split: str):
    wd = WorkDir(work)
    urls = wd.extract_parts(split, "proposals")
    if not urls:
        raise FileNotFoundError(f"no proposals under {wd.extract(split)}: run lsda extract")
    ds = read_parquet(urls, ["image_id", "image_url", "boxes"])
    n_images = ds.count()  # from the files' metadata, before any map
    # extraction stores image paths relative to the dataset root: found wherever it is now
    ds = ds.map_batches(_resolve_urls, fn_kwargs={"data": data}, batch_format="pyarrow")
    return ds, n_images


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
    data: str,
    work: str,
    split: str,
    actor: type,
    kwargs: dict,
    actors: int,
    gpus: bool = False,
) -> tuple[pa.Table, int]:
    """Every image of ``split``'s proposals (of the dataset at ``data``) through an actor pool
    of ``actor(**kwargs)``, one GPU per actor with ``gpus``; the rows they return, and the
    number of images."""
    import ray.data

    ensure_ray()
    ds, n_images = _inputs(data, work, split)
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
