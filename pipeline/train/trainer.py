"""Plumbing shared by both fine-tuning stages: Ray Train run config, optimizer, lr schedule,
checkpoint state inside the training loop, and failure injection for tests.

Ray Train V2 (DESIGN §7): a re-run with the same ``storage_path`` + ``name`` finds its last
checkpoint through ``ray.train.get_checkpoint()``; ``FailureConfig(max_failures)`` restarts a
failed worker group from it.
"""

from __future__ import annotations

import os
import tempfile

import torch

from pipeline import lineage
from pipeline.io import storage
from pipeline.train.resources import TrainPlan, current_plan, reader_group_names, remove_readers
from pipeline.train.stopping import auto_only_settings, length
from pipeline.workdir import WorkDir
from schemas.config import TrainConfig, to_dict


def run_config(work: str, name: str, max_failures: int):
    import pyarrow.fs
    import ray.train

    url = WorkDir(work).train_runs()
    fs, path = storage.get_fs(url)
    if url.startswith("s3://"):
        pa_fs = pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))
        where = {"storage_path": path, "storage_filesystem": pa_fs}
    else:
        os.makedirs(path, exist_ok=True)
        where = {"storage_path": os.path.abspath(path)}
    return ray.train.RunConfig(
        name=name,
        failure_config=ray.train.FailureConfig(max_failures),
        # Ray Train's own INFO/WARNING lines on the controller would bury our one line per
        # epoch; its errors (failures, restarts) still show. (Its workers still log each
        # report at INFO in Ray 2.60, whatever this says.)
        logging_config=ray.train.LoggingConfig(log_level="ERROR"),
        **where,
    )


def start_ray_for_training() -> None:
    """Join or start Ray, with Ray Data's progress bars off for the training inputs: they run
    in split-coordinator actors whose bars would interleave with our one line per epoch."""
    import ray.data

    from pipeline.io.ray_env import ensure_ray

    ensure_ray()
    ray.data.DataContext.get_current().enable_progress_bars = False


def discard_run(work: str, name: str) -> None:
    """Forget a run's checkpoints, so that the next fit starts over instead of resuming."""
    fs, path = storage.get_fs(WorkDir(work).train_run(name))
    if fs.exists(path):
        fs.rm(path, recursive=True)


def scaling_config(cfg: TrainConfig, plan: TrainPlan):
    from ray.train import ScalingConfig

    return ScalingConfig(
        num_workers=cfg.workers, use_gpu=cfg.gpus, resources_per_worker={"CPU": plan.worker_cpus}
    )


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, cfg: TrainConfig, iteration: int) -> None:
    """The paper's step schedule: lr / 10 every ``lr_step`` iterations."""
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * (0.1 ** (iteration // cfg.lr_step))


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over the workers, in place, on ``t``'s device: keep metric tensors on the
    worker's device, because NCCL (``--gpus``) reduces CUDA tensors only."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def accuracy(model, batches, count, device) -> float:
    """Share right over ``batches``, summed across workers. ``count(batch)`` gives (right,
    total) as an int64 tensor on ``device``: nothing leaves the device until the end."""
    model.eval()
    counts = torch.zeros(2, dtype=torch.int64, device=device)
    with torch.no_grad():
        for batch in batches:
            counts += count(batch)
    model.train()
    right, total = all_reduce_sum(counts).tolist()
    return right / max(total, 1)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def report(metrics: dict, model, optimizer, step: int, history: list[dict]) -> None:
    """Report metrics; rank 0 also checkpoints model + optimizer + step + the metrics of every
    report so far (``history``, with ``metrics`` appended: the training curves, which the
    checkpoint carries so that they survive a restart)."""
    import ray.train

    history.append(metrics)
    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(
            {
                "model": unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "history": history,
            },
            os.path.join(tmp, "state.pt"),
        )
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def restore(model, optimizer) -> tuple[int, list[dict]]:
    """Load the last checkpoint of this run, if any; return the step to resume from and the
    metrics reported up to it."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0, []
    with checkpoint.as_directory() as d:
        state = torch.load(os.path.join(d, "state.pt"), weights_only=True, map_location="cpu")
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), list(state.get("history", []))


# Settings of how a fit runs, not of what it makes: changing them redoes nothing.
RUN_ONLY = ("max_failures", "inject_failure_at", "checkpoint_every")


def settings(cfg: TrainConfig) -> dict:
    """The settings that shape the model, for its record (``pipeline.lineage``)."""
    skip = (*RUN_ONLY, *auto_only_settings(cfg))
    return {k: v for k, v in to_dict(cfg).items() if k not in skip}


# A fit's length and when it stops: a run's checkpoint may be resumed by a longer fit with
# otherwise the same inputs (the step schedule depends on ``lr_step``, not on the length: its
# first steps are the same), never by a shorter one.
COUNTS = ("iterations", "epochs")
LENGTH = (*COUNTS, "max_iterations", "max_epochs", "patience", "min_improvement")


def up_to_date(work: str, out: str, run: str, inputs: dict, overwrite: bool, stage: str) -> bool:
    """True if ``out`` exists and was made from ``inputs`` (``pipeline.lineage``). Otherwise
    the fit of ``run`` is to be done: its checkpoints are kept for resuming only if they were
    made from the same inputs, or are the start of a longer fit (never a checkpoint of other
    settings); ``overwrite`` forgets them in any case."""
    if not overwrite and lineage.is_current(out, inputs, stage):
        return True
    run_url = WorkDir(work).train_run(run)
    if overwrite or (storage.exists(run_url) and not _resumable(run_url, inputs)):
        if not overwrite:
            print(f"{stage}: not resuming {run_url}: made from other inputs", flush=True)
        discard_run(work, run)
    lineage.record(run_url, inputs)
    return False


def _resumable(run_url: str, inputs: dict) -> bool:
    diff = lineage.changed(run_url, inputs)
    if diff is None:
        return True
    if not set(diff) <= {f"config.{k}" for k in LENGTH}:
        return False
    before, now = lineage.recorded(run_url)["inputs"]["config"], inputs["config"]
    return all(_most(now, k) >= _most(before, k) for k in COUNTS if k in before)


def _most(config: dict, count: str) -> int:
    """A recorded config's most epochs or iterations (its cap when ``auto``)."""
    return length(config[count], config.get(f"max_{count}", 0))


def fit(loop, config: dict, cfg: TrainConfig, work: str, run: str) -> tuple[dict, dict]:
    """``loop`` on Ray Train's workers (resuming ``run``'s last checkpoint, if any), on CPUs
    planned for them and their readers (``resources.py``): the final model state, and the
    numeric metrics of the last report."""
    from ray.train.torch import TorchTrainer

    plan = current_plan(cfg.workers)
    readers = reader_group_names(plan)
    try:
        result = TorchTrainer(
            loop,
            train_loop_config={**config, "plan": plan, "readers": readers},
            scaling_config=scaling_config(cfg, plan),
            run_config=run_config(work, run, cfg.max_failures),
        ).fit()
    finally:
        remove_readers(readers)
    state = final_state(result)
    return state, {k: v for k, v in result.metrics.items() if isinstance(v, int | float)}


def final_state(result) -> dict:
    """The model state of a finished run's last checkpoint."""
    if result.error:
        raise RuntimeError(f"training failed: {result.error}") from result.error
    with result.checkpoint.as_directory() as d:
        return torch.load(os.path.join(d, "state.pt"), weights_only=True, map_location="cpu")


def maybe_fail(cfg: TrainConfig, step: int, resumed_from: int) -> None:
    """Tests: fail once, right after the checkpoint of ``inject_failure_at``."""
    if cfg.inject_failure_at >= 0 and step == cfg.inject_failure_at and resumed_from == 0:
        raise RuntimeError(f"injected failure after step {step}")


def quiet_report_lines() -> None:
    """Ray 2.60's training workers log every ``report`` at INFO ("Reporting training result
    N: ...", two lines per epoch per worker) through a logger named after its source file, so
    neither LoggingConfig nor the ``ray.train`` logger reach it."""
    import logging

    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray layout: nothing to quiet
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def worker_setup(config: dict) -> torch.device:
    """A training worker's process: quiet, reading in its own reserved CPUs, seeded."""
    import ray.train.torch

    from pipeline.train.stream import configure_worker_data

    rank = ray.train.get_context().get_world_rank()
    quiet_report_lines()
    configure_worker_data(config["plan"], config["readers"][rank])
    torch.set_num_threads(1)  # one thread per worker was faster and steadier on 2 cores
    torch.manual_seed(config["cfg"].seed + rank)
    return ray.train.torch.get_device()
