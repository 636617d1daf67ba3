"""``lsda train-cls``: K-way classification fine-tuning with Ray Train (DESIGN §1 step 1).

Classification shards stream from Ray Data into ``TorchTrainer`` workers (DDP: gloo on CPU,
NCCL with ``--gpus``). The loss covers the K category rows; the background row is not used
until detection fine-tuning. The result is ``WORK/models/cls.pt``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from collections import Counter
from collections.abc import Collection

import torch
import torch.nn.functional as F

from pipeline import lineage
from pipeline.data.categories import read_categories
from pipeline.data.category_sets import held_back
from pipeline.io import storage
from pipeline.model.checkpoints import load_state_dict, save_model
from pipeline.model.nets import CategoryMap, get_model, load_imagenet_weights
from pipeline.model.preprocess import mean_tensor, to_input
from pipeline.train import device_feed, stopping, trainer
from pipeline.train.data import CLS_READER, held_out, worker_batch
from pipeline.train.stream import ShardStream
from pipeline.workdir import CLASSIFIER, WorkDir
from schemas.config import CategorySplit, ExtractConfig, TrainConfig, to_dict


def shard_params(urls: list[str]) -> dict:
    """The extraction settings recorded in a shard's Parquet metadata."""
    import json

    import pyarrow.parquet as pq

    fs, path = storage.get_fs(urls[0])
    with fs.open(path, "rb") as f:
        meta = pq.read_schema(f).metadata or {}
    return json.loads(meta.get(b"lsda", b"{}"))


def classification_categories(
    data: str, urls: list[str], exclude: Collection[str] = (), holdout_every: int = 0
) -> tuple[CategoryMap, int]:
    """Detection categories in map_det order, then every other classification synset sorted;
    ``exclude`` left out (and not counted). Also the number of training (not held-out) images.

    Raises ValueError for a detection category without classification images."""
    import pyarrow.parquet as pq

    counts: Counter = Counter()
    n_train = 0
    excluded = set(exclude)
    for url in urls:
        fs, path = storage.get_fs(url)
        with fs.open(path, "rb") as f:
            t = pq.read_table(f, columns=["wnid", "name"]).to_pydict()
        counts.update(t["wnid"])
        n_train += sum(
            w not in excluded and not held_out(n, holdout_every)
            for w, n in zip(t["wnid"], t["name"], strict=True)
        )
    for w in excluded:
        counts.pop(w, None)
    det = [c.wnid for c in read_categories(data) if c.wnid not in excluded]
    empty = [w for w in det if counts[w] == 0]
    if empty:
        raise ValueError(
            f"no classification images for {len(empty)} detection categories: "
            f"{', '.join(empty[:10])}"
        )
    others = sorted(set(counts) - set(det))
    return CategoryMap(tuple(det + others)), n_train


def count_correct(model, batch: dict, k: int, size: int, mean, amp) -> torch.Tensor:
    """(correct, total) of a batch on the device as an int64 tensor there: no host sync."""
    x = to_input(batch["image"], size, mean, train=False)
    x = device_feed.layout(x)
    with amp:
        pred = model(x)[:, :k].argmax(1)
    correct = (pred == batch["label"]).sum()
    return torch.stack([correct, correct.new_full((), pred.numel())])


def cls_step(model, optimizer, batch: dict, k: int, size: int, mean, amp) -> torch.Tensor:
    """One optimizer step on a batch already on the device (``device_batches``), in ``amp``'s
    precision; the loss stays there (read once per epoch): the host waits for nothing."""
    x = to_input(batch["image"], size, mean, train=True, augment=batch["augment"])
    x = device_feed.layout(x)
    with amp:
        logits = model(x)[:, :k].float()
    loss = F.cross_entropy(logits, batch["label"])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


def _streams(config: dict, cfg: TrainConfig, rank: int, world: int) -> tuple[ShardStream, ...]:
    def stream(holdout: bool) -> ShardStream:
        kwargs = {"rows": config["rows"], "holdout_every": cfg.holdout_every, "holdout": holdout}
        return ShardStream(config["files"], CLS_READER, kwargs, cfg.seed, rank, world)

    return stream(False), stream(True)


def cls_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    cfg: TrainConfig = config["cfg"]
    k, size = config["num_categories"], config["input_size"]
    device = trainer.worker_setup(config)
    mean, amp = mean_tensor(config["mean"], device), device_feed.autocast(device)
    model = get_model(cfg.model, k)
    if cfg.init_weights:
        load_imagenet_weights(model, load_state_dict(cfg.init_weights))
    model = ray.train.torch.prepare_model(device_feed.setup_for_training(model, device))
    optimizer = trainer.make_optimizer(model.parameters(), cfg)
    start, history = trainer.restore(model, optimizer)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    per_worker = worker_batch(cfg.batch_size, world)
    train, holdout = _streams(config, cfg, rank, world)
    steps = config["steps_per_epoch"]
    plateau, epochs = stopping.classifier_plateau(cfg), stopping.length(cfg.epochs, cfg.max_epochs)
    if plateau and plateau.reason(history):  # resumed after it had stopped
        start = epochs
    for epoch in range(start, epochs):
        t0, loss_sum = time.perf_counter(), torch.zeros((), device=device)
        batches = train.endless(per_worker, (epoch,), 4 * cfg.batch_size, "classification")
        with contextlib.closing(batches):
            on_device = device_feed.device_batches(
                itertools.islice(batches, steps), device, size, train=True
            )
            for i, batch in enumerate(on_device):
                trainer.set_lr(optimizer, cfg, epoch * steps + i)
                loss_sum += cls_step(model, optimizer, batch, k, size, mean, amp)
        acc = trainer.accuracy(
            model,
            device_feed.device_batches(holdout.in_order(per_worker), device, size, train=False),
            lambda b: count_correct(model, b, k, size, mean, amp),
            device,
        )
        metrics = {
            "epoch": epoch + 1,
            "loss": loss_sum.item() / steps,
            "holdout_accuracy": acc,
            "images_per_s": steps * cfg.batch_size / (time.perf_counter() - t0),
            "steps_per_epoch": steps,
            "resumed_from": start,
        }
        stop = stopping.check(plateau, history, metrics)
        if rank == 0:
            print(
                f"train-cls epoch {epoch + 1}/{epochs}: loss {metrics['loss']:.3f}, "
                f"held-out accuracy {acc:.3f}, {metrics['images_per_s']:.0f} images/s"
                + (f"; stops: {stop}" if stop else ""),
                flush=True,
            )
        trainer.report(metrics, model, optimizer, epoch + 1, history)
        trainer.maybe_fail(cfg, epoch + 1, start)
        if stop:
            break


def _classification_shards(wd: WorkDir, cfg: TrainConfig) -> tuple[list[str], ExtractConfig, int]:
    """The classification shards, the settings they were extracted with, and the network's
    input size (which the shards' images must cover)."""
    urls = wd.extract_parts("cls", "cls")
    if not urls:
        raise FileNotFoundError(
            f"no classification shards under {wd.extract('cls')}: run "
            "`lsda extract --split cls` first"
        )
    params = shard_params(urls).get("config", {})
    mean = tuple(params.get("pixel_mean", ExtractConfig.pixel_mean))
    ext = ExtractConfig(**{**params, "pixel_mean": mean})
    size = get_model(cfg.model, 1).input_size
    if ext.cls_size < size:
        raise ValueError(
            f"classification shards are {ext.cls_size} px; {cfg.model} needs >= {size}"
        )
    return urls, ext, size


def _batch_for(cfg: TrainConfig, n_train: int) -> TrainConfig:
    """``cfg``, its batch shrunk to the dataset on a tiny one (one step per epoch over all of
    it); refuses what cannot be split over the workers, before Ray starts."""
    if n_train < cfg.workers:
        raise ValueError(f"{n_train} training images for {cfg.workers} workers")
    if n_train < cfg.batch_size:
        print(f"train-cls: {n_train} training images, fewer than batch_size {cfg.batch_size}")
        cfg = dataclasses.replace(cfg, batch_size=n_train - n_train % cfg.workers)
    worker_batch(cfg.batch_size, cfg.workers)
    return cfg


def run_train_cls(
    data: str,
    work: str,
    cfg: TrainConfig,
    overwrite: bool = False,
    sets: CategorySplit = CategorySplit(),
) -> dict:
    work = storage.absolute(work)  # the URLs below go to Train workers
    wd = WorkDir(work)
    out = wd.classifier()
    inputs = {
        "cls": lineage.of_extraction(work, "cls"),
        "config": trainer.settings(cfg),
        "sets": to_dict(sets),
    }
    if trainer.up_to_date(work, out, CLASSIFIER, inputs, overwrite, "train-cls"):
        return {"model": out, "skipped": True}
    urls, ext, size = _classification_shards(wd, cfg)
    categories, n_train = classification_categories(
        data, urls, held_back(data, sets), cfg.holdout_every
    )
    cfg = _batch_for(cfg, n_train)
    trainer.start_ray_for_training()
    config = {
        "cfg": cfg,
        "files": urls,
        "rows": {w: i for i, w in enumerate(categories.wnids)},
        "num_categories": categories.num_categories,
        "input_size": size,
        "mean": ext.pixel_mean,
        "steps_per_epoch": n_train // cfg.batch_size,
    }
    t0 = time.time()
    state, metrics = trainer.fit(cls_loop, config, cfg, work, CLASSIFIER)
    stop = stopping.stopped(state.get("history", []), stopping.classifier_plateau(cfg))
    model = get_model(cfg.model, categories.num_categories)
    model.load_state_dict(state["model"])
    with torch.no_grad():  # the background row is untrained here: as a classifier, score = logit
        model.output.weight[categories.background_row] = 0
        model.output.bias[categories.background_row] = 0
    save_model(
        out,
        model,
        cfg.model,
        categories,
        kind="cls",
        config=to_dict(cfg),
        metrics=metrics,
        history=state.get("history", []),  # the training curves
        stop=stop,  # why it ended early (None: did not)
        input_size=size,
        pixel_mean=list(ext.pixel_mean),
    )
    lineage.record(out, inputs)
    return {
        "model": out,
        "categories": categories.num_categories,
        **metrics,
        "seconds": round(time.time() - t0, 1),
        "stop": stop,
    }
