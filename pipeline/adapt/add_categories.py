"""``lsda add-categories``: new categories from classification images alone (LSDA's promise).

1. fc7 features of the new images (and their mirror images) through the classification
   network (``cls.pt``), frozen.
2. Their output rows, trained as the classifier's would have been: a softmax over the existing
   classifier rows (fixed) and the new rows, on the new images plus a bounded sample of the
   classification shards as negatives (``negatives`` images from evenly spaced shards).
3. Adapted with the k-NN offsets of the categories with boxes (``det-<base>.pt`` − ``cls.pt``),
   as any category without boxes (k = 0: the classifier rows as they are).
4. Appended to a model's output layer (before the background row); a category already in its
   map is replaced in place. Layers 1-7 are untouched: no backbone training.
5. With ``mil``: refined on their own images as bags, as ``lsda mil`` refines the held-out
   rows (``refine_added``). Only their rows: ``[mil] fc7`` is not applied here, since fc7 is
   every category's and adding rows must leave the detector's other categories as they were.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.adapt.rows import adapt, apply_rows, with_bias
from pipeline.data.cls_reader import read_cls_bytes, read_cls_folders
from pipeline.data.sampling import evenly_spaced
from pipeline.extract.inputs import sample_key
from pipeline.extract.stage import extracted_with
from pipeline.extract.warp import resize_square
from pipeline.io import storage
from pipeline.io.images import ImageError, decode_rgb
from pipeline.mil.bags import image_bag
from pipeline.mil.negatives import stored_pool
from pipeline.mil.refine import refine_row, settings_of
from pipeline.model.checkpoints import load_model, save_model
from pipeline.model.nets import CategoryMap, LSDANet
from pipeline.model.preprocess import fc7_features
from pipeline.train.classifier import shard_params
from pipeline.train.data import decode_pixels
from pipeline.workdir import DEFAULT_BASE, DEFAULT_DETECTOR, MIL_SPLIT, WorkDir
from schemas.config import ExtractConfig, MilConfig


def load_new_images(url: str, cls_size: int, max_pixels: int) -> tuple[dict, list[dict]]:
    """{wnid: uint8 (N, S, S, 3)} from ``url/<wnid>/<name>.JPEG``; and the images refused,
    each with the reason (nothing is dropped silently)."""
    index = read_cls_folders(url)
    refused = [{"url": p.url, "reason": f"{p.kind}: {p.message}"} for p in index.problems]
    per_wnid: dict[str, list[np.ndarray]] = {}
    for image in index.images:
        try:
            rgb, _ = decode_rgb(read_cls_bytes(image), max_pixels, 1, (0, 0, 0))
        except (ImageError, OSError) as exc:
            refused.append({"url": image.url, "reason": str(exc)})
            continue
        per_wnid.setdefault(image.wnid, []).append(resize_square(rgb, cls_size))
    return {w: np.stack(v) for w, v in sorted(per_wnid.items())}, refused


def sample_negatives(work: str, budget: int) -> tuple[np.ndarray, list[str]]:
    """About ``budget`` classification images from evenly spaced cls shards (shards hold
    consecutive synsets, so spacing them spreads the sample over the vocabulary)."""
    wd = WorkDir(work)
    urls = wd.extract_parts("cls", "cls")
    if not urls:
        raise FileNotFoundError(f"no classification shards under {wd.extract('cls')}")
    pixels, wnids = [], []
    picked = evenly_spaced(urls, 64)
    for url in picked:
        t = storage.read_table(url, ["wnid", "size", "pixels"])
        take = min(t.num_rows, max(1, budget // len(picked)))
        sizes = t.column("size").to_pylist()[:take]
        pixels.append(decode_pixels(t.column("pixels").to_pylist()[:take], sizes))
        wnids += t.column("wnid").to_pylist()[:take]
    return np.concatenate(pixels), wnids


def train_rows(
    pos: torch.Tensor,
    pos_labels: torch.Tensor,
    neg: torch.Tensor,
    neg_labels: torch.Tensor,
    fixed: torch.Tensor,
    n_new: int,
    steps: int = 300,
    lr: float = 0.01,
) -> torch.Tensor:
    """New output rows (n_new, D + 1) beside the ``fixed`` rows (F, D + 1): full-batch Adam on
    a softmax over both, negatives labelled with their fixed row, positives with their new one.

    The new rows keep the mean norm of the fixed ones (only their directions train, from the
    class means): trained alone on frozen features they would grow ~10x larger, and the
    background row, which detection subtracts, would then barely count against them."""
    x = torch.cat([pos, neg])
    y = torch.cat([pos_labels + len(fixed), neg_labels])
    x1 = torch.cat([x, torch.ones(len(x), 1)], 1)  # the bias as a column
    norm = fixed.norm(dim=1).mean()
    start = torch.stack([x1[: len(pos)][pos_labels == i].mean(0) for i in range(n_new)])
    direction = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([direction], lr=lr)
    fixed_logits = x1 @ fixed.T
    for _ in range(steps):
        rows = norm * F.normalize(direction, dim=1)
        loss = F.cross_entropy(torch.cat([fixed_logits, x1 @ rows.T], 1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (norm * F.normalize(direction, dim=1)).detach()


def append_rows(model: LSDANet, categories: CategoryMap, wnids: list[str], rows: torch.Tensor):
    """``model`` with ``rows`` (bias last) for ``wnids``: replaced where the map has them,
    appended before the background row otherwise. Returns (model, new map)."""
    old = with_bias(model.output)
    known = list(categories.wnids)
    new_map = CategoryMap(tuple(known + [w for w in wnids if w not in set(known)]))
    table = torch.cat([old[:-1], torch.zeros(new_map.num_categories - len(known), old.shape[1])])
    for w, row in zip(wnids, rows, strict=True):
        table[new_map.rows([w])[0]] = row
    table = torch.cat([table, old[-1:]])  # the background row stays last
    model.output = torch.nn.Linear(table.shape[1] - 1, len(table))
    with torch.no_grad():
        model.output.weight.copy_(table[:, :-1])
        model.output.bias.copy_(table[:, -1])
    return model, new_map


def classifier_rows(
    work: str,
    cls_model: LSDANet,
    cls_map: CategoryMap,
    mean,
    new_images: dict,
    negatives: int,
    steps: int,
) -> torch.Tensor:
    """Rows (bias last) for the categories of ``new_images``, beside the classifier's others."""
    wnids = set(new_images)
    pos = [fc7_features(cls_model, imgs, mean, mirror=True) for imgs in new_images.values()]
    pos_labels = torch.cat([torch.full((len(f),), i) for i, f in enumerate(pos)])
    keep = [w for w in cls_map.wnids if w not in wnids]  # re-added ones compete anew
    index = {w: i for i, w in enumerate(keep)}
    neg_pixels, neg_wnids = sample_negatives(work, negatives)
    chosen = [i for i, w in enumerate(neg_wnids) if w in index]
    neg = fc7_features(cls_model, neg_pixels[chosen], mean, mirror=True)
    neg_labels = torch.tensor([index[neg_wnids[i]] for i in chosen]).repeat(2)  # + mirrors
    fixed = with_bias(cls_model.output)[cls_map.rows(keep)]
    return train_rows(torch.cat(pos), pos_labels, neg, neg_labels, fixed, len(pos), steps)


def with_offsets(
    work: str, base: str, cls_model: LSDANet, cls_map: CategoryMap, rows: torch.Tensor, k: int
) -> torch.Tensor:
    """``rows`` moved by the mean offset of their k nearest categories with boxes."""
    det_model, det_map, det_payload = load_model(WorkDir(work).model(base))
    trained = det_payload["trained"]
    cls_b = with_bias(cls_model.output)[cls_map.rows(trained)]
    det_b = with_bias(det_model.output)[det_map.rows(trained)]
    return adapt(rows, cls_b, det_b, k, out=rows).rows


def refine_added(
    work: str, images: str, model: LSDANet, categories: CategoryMap, mean, wnids, cfg: MilConfig
) -> list[dict]:
    """The rows of ``wnids`` refined by ``lsda mil``'s rounds, each on ``images_per_category``
    of its images (in the ``mil`` split's seeded order) as bags made now, against the
    background windows DET train's extraction stored (``stored_pool``); returns the images
    that could not be made a bag, with the reason."""
    proposals = extracted_with(work, MIL_SPLIT) or extracted_with(work, "det-train")
    negatives = stored_pool(work, cfg.negatives, model, mean)
    rows, bg = with_bias(model.output), categories.background_row
    index, skipped = read_cls_folders(images), []
    for wnid in wnids:
        mine = [i for i in index.images if i.wnid == wnid]
        mine.sort(key=lambda i: sample_key(proposals.seed, f"{wnid}/{i.name}"))
        bags = []
        for image in mine[: cfg.images_per_category]:
            try:
                rgb, _ = decode_rgb(read_cls_bytes(image), proposals.max_pixels, 1, tuple(mean))
            except (ImageError, OSError) as exc:
                skipped.append({"url": image.url, "reason": str(exc)})
                continue
            bags.append(image_bag(rgb, model, mean, proposals))
        if bags:
            j = categories.rows([wnid])[0]
            row, _ = refine_row(rows, j, bg, bags, negatives, settings_of(cfg))
            apply_rows(model.output, [j], row[None])
    return skipped


def run_add_categories(
    work: str,
    images: str,
    target: str = DEFAULT_DETECTOR,
    out: str | None = None,
    k: int = 5,
    base: str = DEFAULT_BASE,
    negatives: int = 4096,
    steps: int = 300,
    mil: MilConfig | None = None,
) -> dict:
    """Add the categories of ``images`` to ``WORK/models/<target>``; writes ``<out>``. With
    ``mil``, the new rows are then refined on their images as bags (``refine_added``)."""
    t0 = time.time()
    wd = WorkDir(work)
    cls_model, cls_map, cls_payload = load_model(wd.classifier())
    ext = shard_params(wd.extract_parts("cls", "cls")).get("config", {})
    new_images, refused = load_new_images(
        images,
        ext.get("cls_size", cls_model.input_size),
        ext.get("max_pixels", ExtractConfig.max_pixels),
    )
    if not new_images:
        raise ValueError(f"{images}: no images in <wnid>/<name>.JPEG folders ({refused[:3]})")
    wnids = list(new_images)
    mean = cls_payload["pixel_mean"]
    rows = classifier_rows(work, cls_model, cls_map, mean, new_images, negatives, steps)
    t_rows = time.time() - t0
    if k > 0:
        rows = with_offsets(work, base, cls_model, cls_map, rows, k)
    model, categories, payload = load_model(wd.model(target))
    known = set(categories.wnids)
    model, categories = append_rows(model, categories, wnids, rows)
    mil_skipped = None
    if mil is not None:
        mean = payload["pixel_mean"]
        mil_skipped = refine_added(work, images, model, categories, mean, wnids, mil)
    payload["added"] = sorted(set(payload.get("added", [])) | set(wnids))
    out_url = wd.model(out or target)
    extra = {key: v for key, v in payload.items() if key not in ("model", "state_dict", "wnids")}
    save_model(out_url, model, payload["model"], categories, **extra)
    seconds = time.time() - t0
    return {
        "model": out_url,
        "added": [w for w in wnids if w not in known],
        "replaced": [w for w in wnids if w in known],
        "images": sum(len(v) for v in new_images.values()),
        "refused": refused,
        "k": k,
        "seconds": round(seconds, 2),
        "seconds_per_category": round(seconds / len(wnids), 3),
        "row_training_seconds": round(t_rows, 2),
        **({} if mil_skipped is None else {"mil": True, "mil_skipped": mil_skipped}),
    }
