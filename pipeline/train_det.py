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
from pipeline.train_data import WINDOW_READER, part_files, to_input, worker_batch
from pipeline.train_stream import ShardStream, split_minibatches, take_rows
from schemas.arrow import BACKGROUND
from schemas.config import TrainConfig, to_dict

TRAINING_SPLITS = ("det-train", "val1")
HOLDOUT_WINDOWS = 2048  # per worker: the fg-vs-bg accuracy's sample, held in memory


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


def count_fg_bg(model, batch: dict, cols, bg_row: int, size: int, mean, device) -> torch.Tensor:
    """(right foreground-vs-background calls, total) of a batch, int64 on ``device``."""
    x = to_input(batch["image"].to(device, non_blocking=True), size, mean, train=False)
    pred_bg = model(x)[:, cols].argmax(1) == len(cols) - 1
    is_bg = batch["label"].to(device, non_blocking=True) == bg_row
    return torch.stack([(pred_bg == is_bg).sum(), torch.tensor(len(is_bg), device=device)])


def _chunks(sample: dict | None, size: int):
    n = 0 if sample is None else len(sample["label"])
    for i in range(0, n, size):
        yield {k: v[i : i + size] for k, v in sample.items()}


def det_step(model, optimizer, freezer, fg: dict, bg: dict, cols, col_of_row, size, mean, device):
    """One step on fg + bg windows; ``cols`` and ``col_of_row`` live on ``device``."""
    images = torch.cat([fg["image"], bg["image"]]).to(device, non_blocking=True)
    x = to_input(images, size, mean, train=True)
    y = col_of_row[torch.cat([fg["label"], bg["label"]]).to(device, non_blocking=True)]
    loss = F.cross_entropy(model(x)[:, cols], y)
    optimizer.zero_grad()
    loss.backward()
    freezer.zero_grads()
    optimizer.step()
    freezer.restore()
    return loss.detach()


def _streams(config: dict, cfg: TrainConfig, rank: int, world: int) -> dict[str, ShardStream]:
    labels = set(config["fg_labels"]) | {BACKGROUND}
    return {
        name: ShardStream(
            config["files"],
            WINDOW_READER,
            {
                "rows": config["rows"],
                "labels": labels,
                "holdout_every": cfg.holdout_every,
                "holdout": name == "holdout",
            },
            cfg.seed,
            rank,
            world,
        )
        for name in ("train", "holdout")
    }


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
    cols = torch.tensor(config["loss_rows"], device=device)
    col_of_row = torch.full((bg + 1,), -1, dtype=torch.long, device=device)
    col_of_row[cols] = torch.arange(len(cols), device=device)
    size, mean = config["input_size"], config["mean"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    streams = _streams(config, cfg, rank, world)
    n_fg = worker_batch(cfg.fg_per_batch, world, "fg_per_batch")
    n_bg = worker_batch(cfg.bg_per_batch, world, "bg_per_batch")
    # read before the training stream starts: the two never compete for the free CPUs
    sample = take_rows(streams["holdout"].in_order(256), HOLDOUT_WINDOWS)

    def accuracy() -> float:  # fg-vs-bg calls right on the held-out sample
        def count(b: dict) -> torch.Tensor:
            return count_fg_bg(model, b, cols, bg, size, mean, device)

        return trainer.accuracy(model, _chunks(sample, 256), count, device)

    before = accuracy() if start == 0 else None
    # a resumed run continues with passes it has not seen (key: the iteration it resumed at)
    per_step = n_fg + n_bg
    stream = streams["train"].endless(per_step, (start,), 8 * per_step, "training window")
    minibatches = split_minibatches(stream, bg, n_fg, n_bg, cap=8 * per_step)
    t0, loss_sum = time.perf_counter(), torch.zeros((), device=device)
    for it in range(start, cfg.iterations):
        trainer.set_lr(optimizer, cfg, it)
        loss_sum += det_step(
            model, optimizer, freezer, *next(minibatches), cols, col_of_row, size, mean, device
        )
        step = it + 1
        if step % cfg.checkpoint_every == 0 or step == cfg.iterations:
            windows = (step - start) * (cfg.fg_per_batch + cfg.bg_per_batch)
            rate = windows / (time.perf_counter() - t0)  # training only, not evaluation
            acc = accuracy()
            metrics = {
                "iteration": step,
                "loss": loss_sum.item() / max(step - start, 1),
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
    stream.close()


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
    worker_batch(cfg.fg_per_batch, cfg.workers, "fg_per_batch")  # refuse before Ray starts
    worker_batch(cfg.bg_per_batch, cfg.workers, "bg_per_batch")
    trainer.start_ray_for_training()
    config = {
        "cfg": cfg,
        "cls_url": cls_url,
        "files": urls,
        "rows": rows,
        "fg_labels": sorted(trained),
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
