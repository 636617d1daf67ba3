"""``lsda detect``: score the proposals of a split (or any images) with one or more detectors.

Ray Data ``map_batches`` with an actor pool (``fanout``): each actor loads the detectors once.
Outputs per detector: ``outputs``."""

from __future__ import annotations

import time

import cv2

from pipeline import lineage
from pipeline.data.categories import read_categories
from pipeline.detect.fanout import images_ahead, score_images
from pipeline.detect.image_list import detect_image_list
from pipeline.detect.onnx_engine import ENGINES, OnnxDetectors, read_export
from pipeline.detect.outputs import add_rows, new_rows, write_detections
from pipeline.detect.scoring import MultiDetector
from pipeline.io import storage
from pipeline.workdir import WorkDir
from schemas.config import ExtractConfig, PostConfig, ScoringConfig, to_dict


class DetectActor:
    """Loads the detectors once; scores a batch of images (proposals given or computed)."""

    def __init__(
        self,
        urls: dict[str, str],
        post: PostConfig,
        wnids: list[str],
        ids: dict[str, int],
        proposals: ExtractConfig,
        scoring: ScoringConfig = ScoringConfig(),
        engine: str = "torch",
    ):
        import torch

        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        detectors = OnnxDetectors if engine == "onnxruntime" else MultiDetector
        self.detector = detectors(urls, post, wnids, scoring)
        self.ids, self.proposals = ids, proposals

    def __call__(self, batch: dict) -> dict:
        rows = new_rows()
        for image_id, image, boxes in images_ahead(batch, self.detector.mean, self.proposals):
            for name, (b, s, w) in self.detector.score(image, boxes).items():
                add_rows(rows, name, image_id, b, s, w, self.ids)
        return rows


def run_detect(
    data: str,
    work: str,
    models: dict[str, str],
    split: str | None = None,
    images: list[str] | None = None,
    post: PostConfig = PostConfig(),
    all_categories: bool = False,
    actors: int = 2,
    draw: int = 0,
    proposals: ExtractConfig = ExtractConfig(),
    overwrite: bool = False,
    scoring: ScoringConfig = ScoringConfig(),
    engine: str = "torch",
) -> dict:
    """Score ``split``'s proposals (or ``images``) with every detector in ``models``;
    ``images`` get ``proposals``' selective search, as training's windows did. ``engine``
    onnxruntime scores each model's ONNX export (``lsda export``) instead."""
    _check_models(models, engine)  # here, in one line, not in every scoring actor
    split = split or "images"
    source = lineage.of_images(images) if images else lineage.of_extraction(work, split)
    settings = {
        "post": to_dict(post),
        "all_categories": all_categories,
        "precision": scoring.resolved_precision if engine == "torch" else "fp32",
    }
    if engine != "torch":  # absent for torch, so that earlier runs' records stay current
        settings["engine"] = engine
    inputs = {n: {"model": lineage.of(u), "split": source, **settings} for n, u in models.items()}
    wd = WorkDir(work)
    todo = {
        n: u
        for n, u in models.items()
        if overwrite or not lineage.is_current(wd.detections(n, split), inputs[n], f"detect {n}")
    }
    if not todo:
        return {"skipped": sorted(models)}
    categories = read_categories(data)
    kwargs = {
        "urls": todo,
        "post": post,
        "wnids": None if all_categories else [c.wnid for c in categories],
        "ids": {c.wnid: c.index for c in categories},
        "proposals": proposals,
        "scoring": scoring,
        "engine": engine,
    }
    if images:  # a user's images: quarantined when bad, scored in resumable shards
        key = {"images": images, "models": {n: inputs[n] for n in todo}}
        summary = detect_image_list(
            work, list(todo), images, DetectActor, kwargs, actors, scoring.gpus, draw, key,
            post.coco_per_image,
        )  # fmt: skip
    else:
        t0 = time.perf_counter()
        table, n_images = score_images(data, work, split, DetectActor, kwargs, actors, scoring.gpus)
        seconds = time.perf_counter() - t0
        summary = write_detections(
            work, todo, split, table, n_images, draw, data, post.coco_per_image
        )
        for s in summary.values():  # scoring, all detectors together, actor start-up included
            s.update(seconds=round(seconds, 2), images_per_s=round(n_images / seconds, 2))
    for name in todo:
        lineage.record(wd.detections(name, split), inputs[name])
    return summary


def _check_models(models: dict[str, str], engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    for name, url in models.items():
        if not storage.exists(url):
            raise FileNotFoundError(f"detector {name}: no model at {url}")
        if engine == "onnxruntime":
            read_export(url)
