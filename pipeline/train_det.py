"""``lsda train-det``: detection fine-tuning on warped windows (DESIGN §1 step 2).

Starts from the classifier (``WORK/models/cls.pt``), adds the background row (initialised to
zero), and trains the layers of ``train_layers`` on minibatches of ``fg_per_batch`` foreground +
``bg_per_batch`` background windows streamed from the window shards of ``det-train`` and
``val1``. The softmax covers set B and background (every detection category with ``oracle``);
windows of held-out categories are left out. Output rows that do not train stay bit-for-bit
the classifier's. The result is ``WORK/models/det-<name>.pt``.
"""

from __future__ import annotations

import time
from collections import Counter

import torch
import torch.nn.functional as F

from pipeline import storage, trainer
from pipeline.categories import read_categories
from pipeline.category_sets import held_back, set_b
from pipeline.checkpoints import load_model, save_model
from pipeline.layers import configure_trainable, parse_layers
from pipeline.train_cls import MODEL_NAME, model_url, shard_params
from pipeline.train_data import cache_if_small, part_files, to_input, total_bytes, window_dataset
from schemas.arrow import BACKGROUND
from schemas.config import TrainConfig, to_dict

TRAINING_SPLITS = ("det-train", "val1")


def default_name(cfg: TrainConfig) -> str:
    return "oracle" if cfg.oracle else cfg.train_layers.replace("+", "-")


def _label_counts(urls: list[str]) -> Counter:
    import pyarrow.parquet as pq

    counts: Counter = Counter()
    for url in urls:
        fs, path = storage.get_fs(url)
        with fs.open(path, "rb") as f:
            counts.update(pq.read_table(f, columns=["label"]).column("label").to_pylist())
    return counts


def _cycle(shard, batch_size: int, what: str):
    while True:
        empty = True
        for batch in shard.iter_torch_batches(
            batch_size=batch_size, drop_last=True, local_shuffle_buffer_size=8 * batch_size
        ):
            empty = False
            yield batch
        if empty:
            raise RuntimeError(f"a training worker received no {what} windows")


def _fg_bg_accuracy(model, shard, cols, size, mean, device) -> float:
    """Share of held-out windows whose foreground-vs-background call is right."""
    import torch.distributed as dist

    model.eval()
    counts = torch.zeros(2, dtype=torch.float64)
    bg_col = len(cols) - 1
    with torch.no_grad():
        for batch in shard.iter_torch_batches(batch_size=256):
            x = to_input(batch["image"], size, mean, train=False).to(device)
            pred_bg = model(x)[:, cols].argmax(1).cpu() == bg_col
            is_bg = batch["label"] == trainer.unwrap(model).output.out_features - 1
            counts += torch.tensor([(pred_bg == is_bg).sum().item(), len(is_bg)])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(counts)
    model.train()
    return float(counts[0] / max(counts[1], 1))


def det_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    cfg: TrainConfig = config["cfg"]
    device = trainer.worker_setup(cfg)
    model, categories, _ = load_model(config["cls_url"])
    bg = categories.background_row
    with torch.no_grad():
        model.output.weight[bg] = 0
        model.output.bias[bg] = 0
    freezer = configure_trainable(model, parse_layers(cfg.train_layers), config["trained_rows"])
    model = ray.train.torch.prepare_model(model)
    optimizer = trainer.make_optimizer(model.parameters(), cfg)
    start = trainer.restore(model, optimizer)
    cols = torch.tensor(config["loss_rows"])
    col_of_row = torch.full((bg + 1,), -1, dtype=torch.long)
    col_of_row[cols] = torch.arange(len(cols))
    size, mean = config["input_size"], config["mean"]
    fg = _cycle(ray.train.get_dataset_shard("fg"), cfg.fg_per_batch, "foreground")
    bgs = _cycle(ray.train.get_dataset_shard("bg"), cfg.bg_per_batch, "background")
    holdout = ray.train.get_dataset_shard("holdout")
    rank = ray.train.get_context().get_world_rank()
    before = _fg_bg_accuracy(model, holdout, cols, size, mean, device) if start == 0 else None
    t0, seen, loss_sum = time.perf_counter(), 0, 0.0
    for it in range(start, cfg.iterations):
        a, b = next(fg), next(bgs)
        x = to_input(torch.cat([a["image"], b["image"]]), size, mean, train=True).to(device)
        y = col_of_row[torch.cat([a["label"], b["label"]])].to(device)
        trainer.set_lr(optimizer, cfg, it)
        loss = F.cross_entropy(model(x)[:, cols.to(device)], y)
        optimizer.zero_grad()
        loss.backward()
        freezer.zero_grads()
        optimizer.step()
        freezer.restore()
        seen, loss_sum = seen + len(x), loss_sum + loss.item()
        step = it + 1
        if step % cfg.checkpoint_every == 0 or step == cfg.iterations:
            world = ray.train.get_context().get_world_size()
            rate = seen * world / (time.perf_counter() - t0)  # training only, not evaluation
            acc = _fg_bg_accuracy(model, holdout, cols, size, mean, device)
            metrics = {
                "iteration": step,
                "loss": loss_sum / max(step - start, 1),
                "fg_bg_accuracy": acc,
                "resumed_from": start,
                "windows_per_s": rate,
            }
            if before is not None:
                metrics["fg_bg_accuracy_before"] = before
            if rank == 0:
                print(
                    f"train-det {step}/{cfg.iterations}: loss {metrics['loss']:.3f}, "
                    f"fg-vs-bg accuracy {acc:.3f}, {metrics['windows_per_s']:.0f} windows/s",
                    flush=True,
                )
            trainer.report(metrics, model, optimizer, step)
            trainer.maybe_fail(cfg, step, start)


def run_train_det(
    data: str, work: str, cfg: TrainConfig, name: str | None = None, overwrite: bool = False
) -> dict:
    from ray.train.torch import TorchTrainer

    work = storage.absolute(work)  # the URLs below go to Train workers
    name = name or default_name(cfg)
    out = model_url(work, f"det-{name}.pt")
    if storage.exists(out) and not overwrite:
        return {"model": out, "skipped": True}
    if overwrite:
        trainer.discard_run(work, f"det-{name}")
    cls_url = model_url(work, MODEL_NAME)
    _, categories, payload = load_model(cls_url)
    urls = [u for s in TRAINING_SPLITS for u in part_files(work, s, "windows")]
    if not urls:
        raise FileNotFoundError(
            f"no window shards under {work}/extract/{{det-train,val1}}: run "
            "`lsda extract` on the training splits first"
        )
    size = payload["input_size"]
    window_size = shard_params(urls).get("config", {}).get("window_size")
    if window_size != size:
        raise ValueError(f"window shards are {window_size} px but {payload['model']} takes {size}")
    counts = _label_counts(urls)
    excluded = set(held_back(data, cfg))
    unknown = sorted(set(counts) - set(categories.wnids) - {BACKGROUND} - excluded)
    if unknown:
        raise ValueError(f"{cls_url}: its category map lacks window labels {unknown[:10]}")
    b = set_b(data, cfg)
    det = [c.wnid for c in read_categories(data) if c.wnid not in excluded]
    trained = det if cfg.oracle else b
    empty = [w for w in trained if counts[w] == 0]
    if empty or counts[BACKGROUND] == 0:
        raise ValueError(f"no training windows for {', '.join(empty[:10]) or BACKGROUND}")
    layers = parse_layers(cfg.train_layers)
    bg = categories.background_row
    trained_rows = [bg] + (categories.rows(trained) if "fcB" in layers else [])
    rows = {w: i for i, w in enumerate(categories.wnids)} | {BACKGROUND: bg}
    trainer.start_ray_for_training()
    fg_labels = set(trained)
    stored = total_bytes(urls)
    datasets = {
        "fg": window_dataset(urls, rows, fg_labels, cfg.holdout_every, False),
        "bg": window_dataset(urls, rows, {BACKGROUND}, cfg.holdout_every, False),
        "holdout": window_dataset(urls, rows, fg_labels | {BACKGROUND}, cfg.holdout_every, True),
    }
    datasets = {k: cache_if_small(ds, stored) for k, ds in datasets.items()}
    config = {
        "cfg": cfg,
        "cls_url": cls_url,
        "trained_rows": trained_rows,
        "loss_rows": categories.rows(trained) + [bg],
        "input_size": size,
        "mean": tuple(payload["pixel_mean"]),
    }
    t0 = time.time()
    result = TorchTrainer(
        det_loop,
        train_loop_config=config,
        scaling_config=trainer.scaling_config(cfg),
        run_config=trainer.run_config(work, f"det-{name}", cfg.max_failures),
        datasets=datasets,
    ).fit()
    state = trainer.final_state(result)
    model, _, _ = load_model(cls_url)
    model.load_state_dict(state["model"])
    metrics = {k: v for k, v in result.metrics.items() if isinstance(v, int | float)}
    save_model(
        out,
        model,
        payload["model"],
        categories,
        kind="det",
        config=to_dict(cfg),
        metrics=metrics,
        input_size=size,
        pixel_mean=payload["pixel_mean"],
        set_b=b,
        trained=trained,
        name=name,
    )
    return {"model": out, "name": name, **metrics, "seconds": round(time.time() - t0, 1)}
