"""``lsda train-cls``: K-way classification fine-tuning with Ray Train (DESIGN §1 step 1).

Classification shards stream from Ray Data into ``TorchTrainer`` workers (DDP: gloo on CPU,
NCCL with ``--gpus``). The loss covers the K category rows; the background row is not used
until detection fine-tuning. The result is ``WORK/models/cls.pt``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection

import torch
import torch.nn.functional as F

from pipeline import storage, trainer
from pipeline.categories import read_categories
from pipeline.category_sets import held_back
from pipeline.checkpoints import load_state_dict, save_model
from pipeline.models import CategoryMap, get_model, load_imagenet_weights
from pipeline.train_data import cache_if_small, cls_dataset, part_files, to_input, total_bytes
from schemas.config import ExtractConfig, TrainConfig, to_dict

MODEL_NAME = "cls.pt"


def model_url(work: str, name: str) -> str:
    return storage.join(work, "models", name)


def shard_params(urls: list[str]) -> dict:
    """The extraction settings recorded in a shard's Parquet metadata."""
    import json

    import pyarrow.parquet as pq

    fs, path = storage.get_fs(urls[0])
    with fs.open(path, "rb") as f:
        meta = pq.read_schema(f).metadata or {}
    return json.loads(meta.get(b"lsda", b"{}"))


def classification_categories(
    data: str, urls: list[str], exclude: Collection[str] = ()
) -> tuple[CategoryMap, Counter]:
    """Detection categories in map_det order, then every other classification synset sorted;
    ``exclude`` left out (and not counted).

    Raises ValueError for a detection category without classification images."""
    import pyarrow.parquet as pq

    counts: Counter = Counter()
    for url in urls:
        fs, path = storage.get_fs(url)
        with fs.open(path, "rb") as f:
            counts.update(pq.read_table(f, columns=["wnid"]).column("wnid").to_pylist())
    excluded = set(exclude)
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
    return CategoryMap(tuple(det + others)), counts


def _accuracy(model, shard, size, mean, device, batch_size) -> float:
    import torch.distributed as dist

    model.eval()
    counts = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for batch in shard.iter_torch_batches(batch_size=batch_size):
            x = to_input(batch["image"], size, mean, train=False).to(device)
            k = trainer.unwrap(model).output.out_features - 1
            pred = model(x)[:, :k].argmax(1).cpu()
            counts += torch.tensor([(pred == batch["label"]).sum().item(), len(pred)])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(counts)
    model.train()
    return float(counts[0] / max(counts[1], 1))


def cls_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    cfg: TrainConfig = config["cfg"]
    k, size, mean = config["num_categories"], config["input_size"], config["mean"]
    device = trainer.worker_setup(cfg)
    model = get_model(cfg.model, k)
    if cfg.init_weights:
        load_imagenet_weights(model, load_state_dict(cfg.init_weights))
    model = ray.train.torch.prepare_model(model)
    optimizer = trainer.make_optimizer(model.parameters(), cfg)
    start = trainer.restore(model, optimizer)
    train, holdout = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("holdout")
    rank = ray.train.get_context().get_world_rank()
    iteration = start * config["batches_per_epoch"]
    for epoch in range(start, cfg.epochs):
        t0, seen, loss_sum, batches = time.perf_counter(), 0, 0.0, 0
        for batch in train.iter_torch_batches(
            batch_size=cfg.batch_size, local_shuffle_buffer_size=4 * cfg.batch_size
        ):
            trainer.set_lr(optimizer, cfg, iteration)
            x = to_input(batch["image"], size, mean, train=True).to(device)
            loss = F.cross_entropy(model(x)[:, :k], batch["label"].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen, loss_sum, batches, iteration = (
                seen + len(x),
                loss_sum + loss.item(),
                batches + 1,
                iteration + 1,
            )
        acc = _accuracy(model, holdout, size, mean, device, cfg.batch_size)
        metrics = {
            "epoch": epoch + 1,
            "loss": loss_sum / max(batches, 1),
            "holdout_accuracy": acc,
            "images_per_s": seen
            * ray.train.get_context().get_world_size()
            / (time.perf_counter() - t0),
            "resumed_from": start,
        }
        if rank == 0:
            print(
                f"train-cls epoch {epoch + 1}/{cfg.epochs}: loss {metrics['loss']:.3f}, "
                f"held-out accuracy {acc:.3f}, {metrics['images_per_s']:.0f} images/s",
                flush=True,
            )
        trainer.report(metrics, model, optimizer, epoch + 1)
        trainer.maybe_fail(cfg, epoch + 1, start)


def run_train_cls(data: str, work: str, cfg: TrainConfig, overwrite: bool = False) -> dict:
    from ray.train.torch import TorchTrainer

    work = storage.absolute(work)  # the URLs below go to Train workers
    out = model_url(work, MODEL_NAME)
    if storage.exists(out) and not overwrite:
        return {"model": out, "skipped": True}
    if overwrite:
        trainer.discard_run(work, "cls")
    urls = part_files(work, "cls", "cls")
    if not urls:
        raise FileNotFoundError(
            f"no classification shards under {work}/extract/cls: run "
            "`lsda extract --split cls` first"
        )
    params = shard_params(urls)
    ext = ExtractConfig(
        **{
            **params.get("config", {}),
            "pixel_mean": tuple(
                params.get("config", {}).get("pixel_mean", ExtractConfig.pixel_mean)
            ),
        }
    )
    size = get_model(cfg.model, 1).input_size
    if ext.cls_size < size:
        raise ValueError(
            f"classification shards are {ext.cls_size} px; {cfg.model} needs >= {size}"
        )
    categories, counts = classification_categories(data, urls, held_back(data, cfg))
    rows = {w: i for i, w in enumerate(categories.wnids)}
    trainer.start_ray_for_training()
    datasets = {
        "train": cls_dataset(urls, rows, cfg.holdout_every, False),
        "holdout": cls_dataset(urls, rows, cfg.holdout_every, True),
    }
    datasets = {k: cache_if_small(ds, total_bytes(urls)) for k, ds in datasets.items()}
    n_train = sum(counts.values()) * (1 - 1 / cfg.holdout_every)
    config = {
        "cfg": cfg,
        "num_categories": categories.num_categories,
        "input_size": size,
        "mean": ext.pixel_mean,
        "batches_per_epoch": int(n_train / cfg.batch_size / cfg.workers) + 1,
    }
    t0 = time.time()
    result = TorchTrainer(
        cls_loop,
        train_loop_config=config,
        scaling_config=trainer.scaling_config(cfg),
        run_config=trainer.run_config(work, "cls", cfg.max_failures),
        datasets=datasets,
    ).fit()
    state = trainer.final_state(result)
    model = get_model(cfg.model, categories.num_categories)
    model.load_state_dict(state["model"])
    with torch.no_grad():  # the background row is untrained here: as a classifier, score = logit
        model.output.weight[categories.background_row] = 0
        model.output.bias[categories.background_row] = 0
    metrics = {k: v for k, v in result.metrics.items() if isinstance(v, int | float)}
    save_model(
        out,
        model,
        cfg.model,
        categories,
        kind="cls",
        config=to_dict(cfg),
        metrics=metrics,
        input_size=size,
        pixel_mean=list(ext.pixel_mean),
    )
    return {
        "model": out,
        "categories": categories.num_categories,
        **metrics,
        "seconds": round(time.time() - t0, 1),
    }
