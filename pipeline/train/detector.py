"""``lsda train-det``: detection fine-tuning on warped windows (DESIGN §1 step 2).

Starts from the classifier (``WORK/models/cls.pt``), adds the background row (initialised to
zero), and trains the layers of ``train_layers`` on minibatches of ``fg_per_batch`` foreground +
``bg_per_batch`` background windows streamed from the window shards of ``det-train`` and
``val1``, every image of them (the paper holds none out). The windows were labelled at
extraction with set B's boxes only, so objects of set A are background unless they overlap a
B box; the oracle reads windows labelled with every box (``<split>-oracle``). The softmax
covers set B and background (every detection category with ``oracle``); windows of held-back
categories are left out. Output rows that do not train stay bit-for-bit the classifier's. The
fg-vs-bg accuracy is that of the training minibatches since the previous report, counted
from the forward pass each step makes anyway. The result is ``WORK/models/det-<name>.pt``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from pipeline import lineage
from pipeline.data.category_sets import CategoryRoles, category_roles
from pipeline.extract.stage import TRAINING_SPLITS, extraction_params
from pipeline.io import storage
from pipeline.model.checkpoints import load_model, save_model
from pipeline.model.layers import configure_trainable, parse_layers
from pipeline.model.preprocess import mean_tensor, to_input
from pipeline.train import device_feed, stopping, trainer
from pipeline.train.classifier import shard_params
from pipeline.train.data import WINDOW_READER, worker_batch
from pipeline.train.stream import ShardStream, split_minibatches
from pipeline.workdir import WorkDir, finetune_run
from schemas.arrow import BACKGROUND
from schemas.config import CategorySplit, TrainConfig, to_dict


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


def fg_bg_counts(logits: torch.Tensor, y: torch.Tensor, bg_col: int) -> torch.Tensor:
    """(right foreground-vs-background calls, total), int64 on the logits' device; ``logits``
    and the column labels ``y`` are over the loss columns, background last."""
    right = ((logits.argmax(1) == bg_col) == (y == bg_col)).sum()
    return torch.stack([right, right.new_full((), y.numel())])  # made there, not copied


def det_step(model, optimizer, freezer, batch: dict, cols, col_of_row, size, mean, amp):
    """One step on a minibatch of fg + bg windows already on the device (``device_batches``:
    images, row labels, augmentation); ``cols``, ``col_of_row`` and ``mean`` live there too,
    and ``amp`` is the step's precision (``device_feed.autocast``). Returns the loss and the
    fg-vs-bg counts of the model as it was before the step; the host waits for nothing."""
    x = to_input(batch["image"], size, mean, train=True, augment=batch["augment"])
    x = device_feed.layout(x)
    y = col_of_row[batch["label"]]
    with amp:
        logits = model(x)[:, cols].float()
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad()
    loss.backward()
    freezer.zero_grads()
    optimizer.step()
    freezer.restore()
    return loss.detach(), fg_bg_counts(logits.detach(), y, len(cols) - 1)


def fg_then_bg(minibatches) -> Iterator[dict]:
    """Each (fg, bg) pair of host minibatches as one batch, fg rows first."""
    for fg, bg in minibatches:
        yield {k: torch.cat([fg[k], bg[k]]) for k in fg}


def _stream(config: dict, cfg: TrainConfig, rank: int, world: int, decode: str) -> ShardStream:
    labels = set(config["fg_labels"]) | {BACKGROUND}
    kwargs = {"rows": config["rows"], "labels": labels, "decode": decode}
    return ShardStream(config["files"], WINDOW_READER, kwargs, cfg.seed, rank, world)


def det_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    cfg: TrainConfig = config["cfg"]
    device = trainer.worker_setup(config)
    model, categories, _ = load_model(config["cls_url"])
    bg = categories.background_row
    with torch.no_grad():
        model.output.weight[bg] = 0
        model.output.bias[bg] = 0
    freezer = configure_trainable(model, parse_layers(cfg.train_layers), config["trained_rows"])
    model = ray.train.torch.prepare_model(device_feed.setup_for_training(model, device))
    optimizer = trainer.make_optimizer(model.parameters(), cfg)
    start, history = trainer.restore(model, optimizer)
    cols = torch.tensor(config["loss_rows"], device=device)
    col_of_row = torch.full((bg + 1,), -1, dtype=torch.long, device=device)
    col_of_row[cols] = torch.arange(len(cols), device=device)
    size, mean = config["input_size"], mean_tensor(config["mean"], device)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    n_fg = worker_batch(cfg.fg_per_batch, world, "fg_per_batch")
    n_bg = worker_batch(cfg.bg_per_batch, world, "bg_per_batch")
    # a resumed run continues with passes it has not seen (key: the iteration it resumed at)
    per_step = n_fg + n_bg
    decode = device_feed.window_decode(device) if config["jpeg_windows"] else "host"
    stream = _stream(config, cfg, rank, world, decode).endless(
        per_step, (start,), 8 * per_step, "training window"
    )
    minibatches = split_minibatches(stream, bg, n_fg, n_bg, cap=8 * per_step)
    batches = device_feed.device_batches(fg_then_bg(minibatches), device, size, train=True)
    t0, last = time.perf_counter(), start
    loss_sum = torch.zeros((), device=device)  # since the last report, as the counts
    counts = torch.zeros(2, dtype=torch.long, device=device)
    before = None
    amp = device_feed.autocast(device)
    plateau = stopping.finetune_plateau(cfg)
    iterations = stopping.length(cfg.iterations, cfg.max_iterations)
    if plateau and plateau.reason(history):  # resumed after it had stopped
        start = iterations
    for it in range(start, iterations):
        trainer.set_lr(optimizer, cfg, it)
        loss, right = det_step(
            model, optimizer, freezer, next(batches), cols, col_of_row, size, mean, amp
        )
        loss_sum += loss
        counts += right
        if it == 0:  # the first batch, scored by the classifier as it came
            before = trainer.all_reduce_sum(right.clone())
        step = it + 1
        if step % cfg.checkpoint_every == 0 or step == iterations:
            windows = (step - start) * (cfg.fg_per_batch + cfg.bg_per_batch)
            rate = windows / (time.perf_counter() - t0)
            total = trainer.all_reduce_sum(counts)
            metrics = {
                "iteration": step,
                "loss": trainer.all_reduce_sum(loss_sum).item() / world / (step - last),
                "fg_bg_accuracy": (total[0] / total[1].clamp(min=1)).item(),
                "resumed_from": start,
                "windows_per_s": rate,
            }
            loss_sum.zero_()
            counts.zero_()
            last = step
            if before is not None:
                metrics["fg_bg_accuracy_before"] = (before[0] / before[1]).item()
            stop = stopping.check(plateau, history, metrics)
            if rank == 0:
                print(
                    f"train-det {step}/{iterations}: loss {metrics['loss']:.3f}, "
                    f"fg-vs-bg accuracy {metrics['fg_bg_accuracy']:.3f} (training batches), "
                    f"{metrics['windows_per_s']:.0f} windows/s"
                    + (f"; stops: {stop}" if stop else ""),
                    flush=True,
                )
            trainer.report(metrics, model, optimizer, step, history)
            trainer.maybe_fail(cfg, step, start)
            if stop:
                break
    stream.close()


def _training_params(work: str, cfg: TrainConfig) -> dict[str, dict]:
    """Each training split's extraction ``params.json`` (the oracle's for ``cfg.oracle``)."""
    return {s: extraction_params(work, s, cfg.oracle) or {} for s in TRAINING_SPLITS}


def _check_labelling(
    work: str, params: dict[str, dict], wanted, cfg: TrainConfig, sets: CategorySplit
) -> None:
    """The windows must be labelled with the boxes this training may see: set B's, or every
    box for the oracle (set at extraction, where annotations enter; ``params.json``)."""
    for split, p in params.items():
        got = p.get("boxes_of")
        if got != wanted:
            where = WorkDir(work).extract(split, cfg.oracle)
            raise ValueError(
                f"{where}: windows labelled with the boxes of {_describe(got)}, "
                f"but this fine-tune (set_b={sets.set_b}, oracle={cfg.oracle}) needs "
                f"{_describe(wanted)}; "
                "extract the training splits again with the same set_b"
            )


def _all_jpeg(params: dict[str, dict]) -> bool:
    """Whether every training split stored its windows as JPEG: only then may a GPU worker
    take them encoded and decode them itself (the row pools hold one kind of row)."""
    encodings = {p.get("config", {}).get("window_encoding") for p in params.values()}
    return encodings == {"jpeg"}


def _describe(boxes_of) -> str:
    return "every category" if boxes_of == "all" else f"{len(boxes_of or [])} categories"


def _window_shards(wd: WorkDir, cfg: TrainConfig, payload: dict) -> list[str]:
    """The window shards of the training splits (the oracle's for ``cfg.oracle``), warped to
    the input size of the classifier's network (``payload``)."""
    urls = [u for s in TRAINING_SPLITS for u in wd.extract_parts(s, "windows", cfg.oracle)]
    if not urls:
        splits = ", ".join(wd.extract(s, cfg.oracle) for s in TRAINING_SPLITS)
        raise FileNotFoundError(
            f"no window shards under {splits}: run `lsda extract` "
            f"on the training splits first{' with --oracle' if cfg.oracle else ''}"
        )
    window_size = shard_params(urls).get("config", {}).get("window_size")
    size = payload["input_size"]
    if window_size != size:
        raise ValueError(f"window shards are {window_size} px but {payload['model']} takes {size}")
    return urls


def _trained_categories(
    urls: list[str], cfg: TrainConfig, roles: CategoryRoles, categories, cls_url: str
) -> list[str]:
    """The categories whose rows this fine-tune trains (set B; every one for the oracle)
    that have windows, every window label known to the classifier. A category without any
    (no box of it gave a window: at the imagenet size, 4 of 200 for the oracle) keeps its
    classifier row, and is named; no background window, or none at all, is refused."""
    counts = _label_counts(urls)
    excluded = set(roles.held_back)
    unknown = sorted(set(counts) - set(categories.wnids) - {BACKGROUND} - excluded)
    if unknown:
        raise ValueError(f"{cls_url}: its category map lacks window labels {unknown[:10]}")
    det = [w for w in roles.detection if w not in excluded]
    trained = det if cfg.oracle else roles.set_b
    empty = [w for w in trained if counts[w] == 0]
    if counts[BACKGROUND] == 0 or len(empty) == len(trained):
        missing = BACKGROUND if counts[BACKGROUND] == 0 else f"any of its {len(trained)} categories"
        raise ValueError(f"no training windows for {missing}")
    if empty:
        more = f" and {len(empty) - 10} more" if len(empty) > 10 else ""
        print(
            f"train-det: no training windows for {len(empty)} of "
            f"{len(trained)} categories ({', '.join(empty[:10])}{more}): their rows stay the "
            "classifier's",
            flush=True,
        )
    return [w for w in trained if counts[w] > 0]


def run_train_det(
    data: str,
    work: str,
    cfg: TrainConfig,
    name: str | None = None,
    overwrite: bool = False,
    sets: CategorySplit = CategorySplit(),
) -> dict:
    work = storage.absolute(work)  # the URLs below go to Train workers
    name = name or default_name(cfg)
    wd = WorkDir(work)
    out, run = wd.finetuned(name), finetune_run(name)
    cls_url = wd.classifier()
    inputs = {
        "cls": lineage.of(cls_url),
        **{s: lineage.of_extraction(work, s, cfg.oracle) for s in TRAINING_SPLITS},
        "config": trainer.settings(cfg),
        "sets": to_dict(sets),
    }
    if trainer.up_to_date(work, out, run, inputs, overwrite, f"train-det {name}"):
        return {"model": out, "skipped": True}
    _, categories, payload = load_model(cls_url)
    size = payload["input_size"]
    urls = _window_shards(wd, cfg, payload)
    roles = category_roles(data, sets)
    b = roles.set_b
    params = _training_params(work, cfg)
    _check_labelling(work, params, "all" if cfg.oracle else b, cfg, sets)
    trained = _trained_categories(urls, cfg, roles, categories, cls_url)
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
        "jpeg_windows": _all_jpeg(params),
    }
    t0 = time.time()
    state, metrics = trainer.fit(det_loop, config, cfg, work, run)
    stop = stopping.stopped(state.get("history", []), stopping.finetune_plateau(cfg))
    model, _, _ = load_model(cls_url)
    model.load_state_dict(state["model"])
    save_model(
        out,
        model,
        payload["model"],
        categories,
        kind="det",
        config=to_dict(cfg),
        metrics=metrics,
        history=state.get("history", []),  # the training curves
        stop=stop,  # why it ended early (None: did not)
        input_size=size,
        pixel_mean=payload["pixel_mean"],
        set_b=b,
        trained=trained,
        name=name,
    )
    lineage.record(out, inputs)
    return {
        "model": out,
        "name": name,
        **metrics,
        "seconds": round(time.time() - t0, 1),
        "stop": stop,
    }
