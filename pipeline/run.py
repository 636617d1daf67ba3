"""``lsda run``: the whole pipeline and the paper's ablation on one dataset.

extract (cls, det-train, val1, val2, mil) -> train-cls -> train-det (background only, all
layers + fcB, oracle) -> adapt (k-NN, global average) -> mil (the k-NN detector's held-out rows
refined on their classification images) -> detect (val2) -> evaluate -> report. Every
stage skips what is already finished in the work dir, so a re-run resumes.
"""

from __future__ import annotations

import dataclasses
import time

from pipeline.adapt.stage import run_adapt
from pipeline.data.category_sets import CategoryRoles, category_roles
from pipeline.detect.stage import run_detect
from pipeline.evaluate.report import write_report
from pipeline.evaluate.stage import run_evaluate
from pipeline.extract.stage import format_summary, run_extract
from pipeline.failures import DEFAULT_MAX_BAD
from pipeline.io import storage
from pipeline.mil.stage import run_mil
from pipeline.train.classifier import run_train_cls
from pipeline.train.detector import run_train_det
from pipeline.workdir import (
    AVG_OFFSET,
    FINETUNES,
    MIL_SPLIT,
    WorkDir,
    ablation_models,
    knn_name,
    mil_name,
)
from schemas.config import RunConfig, load_config


class Timings(dict):
    """Seconds per stage (summed over its calls); each call announced as it starts, with what
    it makes (``label``)."""

    def __call__(self, title: str, fn, /, *args, label: str = "", **kwargs):
        t0 = time.time()
        print(f"== {title} {label}".rstrip(), flush=True)
        out = fn(*args, **kwargs)
        self[title] = round(self.get(title, 0) + time.time() - t0, 1)
        return out


def extract_all(
    data: str, work: str, cfg: RunConfig, timed: Timings, progress: bool, max_bad: float
) -> None:
    """Every split the run reads; the training splits twice: labelled by set B's boxes, and by
    every box for the oracle; the held-out categories' bags for ``lsda mil``."""
    splits = [(s, False) for s in ("cls", "det-train", "val1", cfg.run.eval_split)]
    splits += [("det-train", True), ("val1", True)]
    splits += [(MIL_SPLIT, False)] if cfg.run.mil else []
    for split, oracle in splits:
        summary = timed(
            "extract",
            run_extract,
            data,
            work,
            split,
            cfg.extract,
            progress=progress,
            oracle=oracle,
            sets=cfg.categories,
            max_bad=max_bad,
            bags=cfg.mil,
            label=split + (" (oracle's windows)" if oracle else ""),
        )
        print(format_summary(summary), flush=True)


def train_all(data: str, work: str, cfg: RunConfig, timed: Timings) -> None:
    """The classifier, then the three detection fine-tunes of the ablation."""
    timed("train-cls", run_train_cls, data, work, cfg.train_cls, sets=cfg.categories)
    det = cfg.train_det
    finetunes = {
        "bg-only": dataclasses.replace(
            det, train_layers="bg", iterations=cfg.run.bg_only_iterations or det.iterations
        ),
        "all-layers": dataclasses.replace(det, train_layers="all+fcB"),
        "oracle": dataclasses.replace(det, train_layers="all+fcB", oracle=True),
    }
    for row, train_cfg in finetunes.items():
        name = FINETUNES[row]
        timed(
            "train-det",
            run_train_det,
            data,
            work,
            train_cfg,
            name=name,
            sets=cfg.categories,
            label=row,
        )


def adapt_all(work: str, cfg: RunConfig, roles: CategoryRoles, timed: Timings) -> None:
    base = FINETUNES["all-layers"]
    k, num_b = cfg.run.k, len(roles.set_b)
    timed("adapt", run_adapt, work, base, k, name=knn_name(k), label=knn_name(k))
    timed("adapt", run_adapt, work, base, num_b, name=AVG_OFFSET, label=AVG_OFFSET)


def refine_all(data: str, work: str, cfg: RunConfig, timed: Timings) -> None:
    """The k-NN detector's held-out rows refined on their classification images."""
    knn = knn_name(cfg.run.k)
    summary = timed("mil", run_mil, data, work, cfg.mil, base=knn, label=mil_name(knn))
    if not summary.get("skipped"):
        pool = summary["negatives_pool"]  # 0: every task was done by an earlier run
        print(
            f"mil: {summary['refined']} categories refined on {summary['bags']} bags, "
            f"{summary['cpu_seconds_per_category']} CPU s per category"
            + (f"; negatives mined from a pool of {pool}" if pool else ""),
            flush=True,
        )


def detect_and_evaluate(
    data: str, work: str, cfg: RunConfig, roles: CategoryRoles, timed: Timings
) -> dict[str, dict]:
    """Every row's detector on the evaluation split; each row's metrics."""
    wd, split = WorkDir(work), cfg.run.eval_split
    rows = ablation_models(cfg.run.k, cfg.run.mil)
    models = {row: wd.model(stem) for row, stem in rows.items()}
    timed(
        "detect",
        run_detect,
        data,
        work,
        models,
        split=split,
        post=cfg.detect,
        actors=cfg.run.actors,
        proposals=cfg.extract,
        scoring=cfg.scoring,
    )
    b, held = roles.set_b, roles.held_back
    return {
        row: timed("evaluate", run_evaluate, data, work, row, split, b, held_back=held, label=row)
        for row in models
    }


def run_pipeline(
    data: str,
    work: str,
    config: str | None = None,
    quick: bool = False,
    progress: bool = True,
    max_bad: float = DEFAULT_MAX_BAD,
) -> dict:
    data, work = storage.absolute(data), storage.absolute(work)
    cfg = load_config(config, quick)
    roles = category_roles(data, cfg.categories)  # no category list: fails here, before Ray
    timed = Timings()
    t0 = time.time()
    extract_all(data, work, cfg, timed, progress, max_bad)
    train_all(data, work, cfg, timed)
    adapt_all(work, cfg, roles, timed)
    if cfg.run.mil:
        refine_all(data, work, cfg, timed)
    metrics = detect_and_evaluate(data, work, cfg, roles, timed)
    timed["total"] = round(time.time() - t0, 1)
    return timed("report", write_report, data, work, metrics, cfg.run, timed)
