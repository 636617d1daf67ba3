"""The negatives of ``lsda mil``: a pool of DET train's background proposals, as fc7 features,
from which each round of the refinement takes the windows the current row scores highest
(hard-negative mining, ``refine.py``).

DET train's extraction keeps a sample of each image's background windows (``bg_per_image``,
as pixels), made for fine-tuning; the refinement wants many more, and the hard ones. So the
pool is made again from the extraction's *proposals*: every proposal whose best IoU with the
image's (set B) boxes is below ``fg_iou`` is background, the same rule as the extraction's, and
is warped from the image as detection warps windows. The boxes come from the windows' ``gt``
rows, so the pool needs no annotation reader.

The pool is built once per ``lsda mil``, by one Ray task per DET train shard (at most
``MAX_POOL_SHARDS``, evenly spaced), each returning its windows' features; the actors read
them from the object store (zero-copy on a node: one copy per node, not per actor). The
budget ``negatives`` is spread evenly over the shards and, within a shard, over its images (a
seeded sample per image where an image has more background proposals than its share).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from pipeline.data.boxes import best_overlap
from pipeline.data.sampling import evenly_spaced, seeded_sample
from pipeline.extract.shard import shard_parts
from pipeline.extract.stage import extracted_with, read_markers
from pipeline.io import storage
from pipeline.io.images import decode_rgb
from pipeline.mil.bags import fc7, window_features
from pipeline.model.checkpoints import load_model
from pipeline.model.nets import LSDANet
from pipeline.train.data import decode_pixels
from pipeline.workdir import WorkDir
from schemas.arrow import BACKGROUND

SPLIT = "det-train"
MAX_POOL_SHARDS = 64  # shards the pool is drawn from (each a task reading its images)


def pool_shards(work: str) -> list[int]:
    """DET train's finished shards the pool is drawn from (evenly spaced)."""
    sdir = WorkDir(work).extract(SPLIT)
    shards = sorted(read_markers(sdir))
    if not shards:
        raise FileNotFoundError(f"no finished shards under {sdir}: run `lsda extract` first")
    return evenly_spaced(shards, MAX_POOL_SHARDS)


def pool_plan(work: str, budget: int) -> tuple[list[int], int]:
    """The shards the pool is drawn from, and each one's share of ``budget``."""
    shards = pool_shards(work)
    return shards, -(-budget // len(shards))


def gt_boxes(sdir: str, shard: int) -> dict[str, np.ndarray]:
    """Each image's labelled boxes in ``shard``, from its windows' ``gt`` rows."""
    found: dict[str, list] = {}
    for url in shard_parts(sdir, "windows", shard):
        t = storage.read_table(url, ["image_id", "source", "box"]).to_pydict()
        for image_id, source, box in zip(t["image_id"], t["source"], t["box"], strict=True):
            if source == "gt":
                found.setdefault(image_id, []).append(box)
    return {k: np.asarray(v, np.float32).reshape(-1, 4) for k, v in found.items()}


def background_boxes(
    image_id: str, proposals: np.ndarray, gt: np.ndarray, fg_iou: float, cap: int, seed: int
) -> np.ndarray:
    """The proposals below ``fg_iou`` with every box; a seeded sample of ``cap`` if more."""
    _, ious = best_overlap(proposals, gt)
    keep = seeded_sample(np.nonzero(ious < fg_iou)[0].tolist(), cap, seed, image_id)
    return proposals[keep]


def shard_pool(
    data: str, work: str, model_url: str, shard: int, quota: int
) -> tuple[np.ndarray, list[str]]:
    """Features (N, D + 1) of up to ``quota`` background proposals of one DET train shard, and
    the images that could not be read ("<url>: <why>"): left out of the pool, not fatal."""
    torch.set_num_threads(1)
    sdir, cfg = WorkDir(work).extract(SPLIT), extracted_with(work, SPLIT)
    model, _, payload = load_model(model_url)
    mean = payload["pixel_mean"]
    gt = gt_boxes(sdir, shard)
    images = []
    for url in shard_parts(sdir, "proposals", shard):
        images += storage.read_table(url, ["image_id", "image_url", "boxes"]).to_pylist()
    per_image = max(1, -(-quota // max(len(images), 1)))
    none = np.zeros((0, 4), np.float32)
    feats, skipped = [], []
    for row in sorted(images, key=lambda r: r["image_id"]):
        proposals = np.asarray(row["boxes"], np.float32).reshape(-1, 4)
        truth = gt.get(row["image_id"], none)
        boxes = background_boxes(row["image_id"], proposals, truth, cfg.fg_iou, per_image, cfg.seed)
        if not len(boxes):
            continue
        url = storage.resolve(data, row["image_url"])
        try:
            image, _ = decode_rgb(storage.read_bytes(url), cfg.max_pixels, 1, tuple(mean))
        except (OSError, ValueError) as exc:  # lost since extraction: the pool goes without it
            skipped.append(f"{url}: {type(exc).__name__}: {exc}")
            continue
        feats.append(window_features(image, boxes, model, mean))
    out = torch.cat(feats) if feats else torch.zeros(0, model.output.in_features + 1)
    return out[:quota].numpy(), skipped


def build_pool(data: str, work: str, model_url: str, budget: int) -> tuple[list, int, list[str]]:
    """The pool's parts as object refs (one Ray task per shard of ``pool_shards``), its size in
    windows and the images left out of it; the driver never holds the features."""
    import ray

    from pipeline.io.ray_env import remote_args

    shards, quota = pool_plan(work, budget)

    def part(*args) -> tuple[np.ndarray, tuple[int, list[str]]]:
        features, skipped = shard_pool(*args)
        return features, (len(features), skipped)

    task = ray.remote(num_cpus=1, num_returns=2)(part).options(**remote_args())
    pending = [task.remote(data, work, model_url, s, quota) for s in shards]
    counts = ray.get([p[1] for p in pending])
    size = min(budget, sum(n for n, _ in counts))
    return [p[0] for p in pending], size, [s for _, group in counts for s in group]


def local_pool(data: str, work: str, model_url: str, budget: int) -> NegativePool:
    """``build_pool``'s pool made in this process, shard after shard (the cost bench)."""
    shards, quota = pool_plan(work, budget)
    parts = [shard_pool(data, work, model_url, s, quota)[0] for s in shards]
    return NegativePool(parts, budget)


def stored_pool(work: str, budget: int, model: LSDANet, mean) -> NegativePool:
    """A pool from the background windows DET train's extraction stored (its sample of
    ``bg_per_image`` per image, as pixels), first ones of evenly spaced parts: for
    ``add-categories --mil``, which knows the work dir but not where DET train's images are."""
    urls = WorkDir(work).extract_parts(SPLIT, "windows")
    if not urls:
        raise FileNotFoundError(f"no windows under {WorkDir(work).extract(SPLIT)}")
    parts = evenly_spaced(urls, MAX_POOL_SHARDS)
    per_part = max(1, -(-budget // len(parts)))
    feats = []
    for url in parts:
        t = storage.read_table(url, ["label", "size", "encoding", "pixels"]).to_pydict()
        keep = [i for i, label in enumerate(t["label"]) if label == BACKGROUND][:per_part]
        pixels = decode_pixels(*([t[c][i] for i in keep] for c in ("pixels", "size", "encoding")))
        feats.append(fc7(model, pixels, mean).numpy())
    return NegativePool(feats, budget)


class NegativePool:
    """The pool's parts, held as they came (read-only arrays from the object store)."""

    def __init__(self, parts: list[np.ndarray], budget: int):
        with warnings.catch_warnings():  # read-only: the pool is only read
            warnings.simplefilter("ignore", UserWarning)
            tensors = [torch.from_numpy(p) for p in parts if len(p)]
        self.parts = self._cut(tensors, budget)

    @staticmethod
    def _cut(parts: list[torch.Tensor], budget: int) -> list[torch.Tensor]:
        out, left = [], budget
        for p in parts:
            if left <= 0:
                break
            out.append(p[:left])
            left -= len(out[-1])
        return out

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def hardest(self, d: torch.Tensor, k: int, ceiling: float | None = None) -> torch.Tensor:
        """The ``k`` windows ``d`` scores highest (all of them if ``k`` is 0 or the pool's
        size or more), in pool order. With ``ceiling``, only among those scoring at most
        that (all of them where none does: the pool is never left empty)."""
        if ceiling is None and (k <= 0 or k >= len(self)):
            return torch.cat(self.parts).float()
        scores = torch.cat([p.float() @ d for p in self.parts])
        n = len(scores) if k <= 0 else min(k, len(scores))
        below = scores <= ceiling if ceiling is not None else None
        if below is not None and below.any():  # none below: the ceiling is off
            n = min(n, int(below.sum()))
            scores = scores.masked_fill(~below, -torch.inf)
        picks = torch.sort(torch.topk(scores, n).indices).values
        offsets = torch.tensor([0] + [len(p) for p in self.parts]).cumsum(0)
        rows = []
        for i, p in enumerate(self.parts):
            mine = picks[(picks >= offsets[i]) & (picks < offsets[i + 1])] - offsets[i]
            rows.append(p[mine].float())
        return torch.cat(rows)
