"""``lsda run``: the whole pipeline and the paper's ablation on one dataset.

extract (cls, det-train, val1, val2) -> train-cls -> train-det (background only, all layers +
fcB, oracle) -> adapt (k-NN, global average) -> detect (val2) -> evaluate -> report. Every
stage skips what is already finished in the work dir, so a re-run resumes.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial

from pipeline.adapt.stage import run_adapt
from pipeline.data.categories import read_categories
from pipeline.data.category_sets import held_back, set_b
from pipeline.detect.postprocess import PostConfig
from pipeline.detect.stage import run_detect
from pipeline.evaluate.report import write_report
from pipeline.evaluate.stage import run_evaluate
from pipeline.extract.stage import format_summary, run_extract
from pipeline.io import storage
from pipeline.train.classifier import model_url, run_train_cls
from pipeline.train.detector import run_train_det
from schemas.config import (
    ExtractConfig,
    PipelineConfig,
    ScoringConfig,
    TrainConfig,
    load_section,
)

# ablation row -> (model file in WORK/models, how it is made)
DETECTORS = {
    "classifier": "cls.pt",
    "bg-only": "det-bg.pt",
    "all-layers": "det-all-fcB.pt",
    "knn-5": "detector-knn-5.pt",
    "avg-offset": "detector-avg-offset.pt",
    "oracle": "det-oracle.pt",
}


def load_configs(path: str | None, quick: bool):
    """The four sections of a config file; ``quick`` applies its ``[quick]`` overrides."""
    import yaml

    doc = yaml.safe_load(storage.read_text(path)) if path else {}
    q = (doc or {}).get("quick", {}) if quick else {}
    ext = load_section(path, "extract", ExtractConfig, **q.get("extract", {}))
    cls = load_section(path, "train_cls", TrainConfig, **q.get("train_cls", {}))
    det = load_section(path, "train_det", TrainConfig, **q.get("train_det", {}))
    run = load_section(path, "run", PipelineConfig, **q.get("run", {}))
    return ext, cls, det, run


def _stage(title: str, timings: dict, fn, /, *args, **kwargs):
    t0 = time.time()
    print(f"== {title}", flush=True)
    out = fn(*args, **kwargs)
    timings[title] = round(timings.get(title, 0) + time.time() - t0, 1)
    return out


def _variant(cfg: TrainConfig, **changes) -> TrainConfig:
    return load_section(None, "x", TrainConfig, **{**cfg.__dict__, **changes})


def run_pipeline(
    data: str, work: str, config: str | None = None, quick: bool = False, progress: bool = True
) -> dict:
    data, work = storage.absolute(data), storage.absolute(work)
    ext, cls_cfg, det_cfg, run_cfg = load_configs(config, quick)
    read_categories(data)  # a dataset root without its category list fails here, before Ray
    scoring = load_section(config, "scoring", ScoringConfig)
    if run_cfg.hold_back:  # one setting for every stage
        cls_cfg = _variant(cls_cfg, hold_back=run_cfg.hold_back)
        det_cfg = _variant(det_cfg, hold_back=run_cfg.hold_back)
    timings: dict[str, float] = {}
    t0 = time.time()
    ext = dataclasses.replace(ext, set_b=det_cfg.set_b)  # the boxes training may see
    extractions = [(s, False) for s in ("cls", "det-train", "val1", run_cfg.eval_split)]
    extractions += [("det-train", True), ("val1", True)]  # every box: the oracle's windows
    for split, oracle in extractions:
        s = _stage(
            "extract",
            timings,
            run_extract,
            data,
            work,
            split,
            ext,
            progress=progress,
            oracle=oracle,
        )
        print(format_summary(s), flush=True)
    _stage("train-cls", timings, run_train_cls, data, work, cls_cfg)
    bg_iters = run_cfg.bg_only_iterations or det_cfg.iterations
    _stage(
        "train-det",
        timings,
        run_train_det,
        data,
        work,
        _variant(det_cfg, train_layers="bg", iterations=bg_iters),
        name="bg",
    )
    _stage(
        "train-det",
        timings,
        run_train_det,
        data,
        work,
        _variant(det_cfg, train_layers="all+fcB"),
        name="all-fcB",
    )
    _stage(
        "train-det",
        timings,
        run_train_det,
        data,
        work,
        _variant(det_cfg, train_layers="all+fcB", oracle=True),
        name="oracle",
    )
    b, held = set_b(data, det_cfg), held_back(data, det_cfg)
    _stage("adapt", timings, run_adapt, work, "all-fcB", run_cfg.k, name="knn-5")
    _stage("adapt", timings, run_adapt, work, "all-fcB", len(b), name="avg-offset")
    models = {row: model_url(work, f) for row, f in DETECTORS.items()}
    post = PostConfig(run_cfg.nms_iou, run_cfg.pre_nms_top, run_cfg.max_per_class)
    _stage(
        "detect",
        timings,
        run_detect,
        data,
        work,
        models,
        split=run_cfg.eval_split,
        post=post,
        actors=run_cfg.actors,
        proposals=ext,
        scoring=scoring,
    )
    evaluate = partial(run_evaluate, data, work, split=run_cfg.eval_split, set_b=b, held_back=held)
    metrics = {row: _stage("evaluate", timings, evaluate, row) for row in DETECTORS}
    timings["total"] = round(time.time() - t0, 1)
    return _stage("report", timings, write_report, data, work, metrics, run_cfg, timings)
