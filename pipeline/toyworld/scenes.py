"""Classification images and detection scenes: the domain gap LSDA exists to close.

A classification image shows one large, centred object on a smooth background. A detection
scene shows 1-4 smaller labelled objects among textured patches, object-like distractors,
partial objects and occluders; boxes are tight around what stays visible (recipe:
shared TOYWORLD.md, measured by a prototype).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.toyworld import render
from pipeline.toyworld.vocabulary import Look

MIN_VISIBLE = 0.3  # an object less visible than this is not labelled
MIN_BOX = 6  # pixels; smaller visible remains are not labelled either


@dataclass(frozen=True)
class SceneObject:
    category: int  # index into the caller's category list
    xmin: int
    ymin: int
    xmax: int
    ymax: int


def classification_image(
    look: Look, rng: np.random.Generator, lo: int, hi: int
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """An object-centred image, and the object's box (inclusive pixels): the latent positive
    that multiple-instance learning looks for. The generator records it beside the dataset
    (``cls_boxes``) for tests and benches; no stage reads it."""
    h, w = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
    image = render.smooth_background(h, w, rng)
    size = min(h, w) * rng.uniform(0.7, 0.95)
    cx = w / 2 + rng.uniform(-0.08, 0.08) * w
    cy = h / 2 + rng.uniform(-0.08, 0.08) * h
    aspect = math.exp(rng.uniform(-0.25, 0.25))
    mask = render.draw_object(image, look, cx, cy, size, rng, aspect, rng.uniform(-0.25, 0.25))
    ys, xs = np.nonzero(mask > 0.5)
    box = (
        (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        if len(xs)
        else (0, 0, w - 1, h - 1)
    )
    return render.finish(image, rng, noise=0.02, blur=0.0), box


def _random_look(rng: np.random.Generator) -> Look:
    return Look(int(rng.integers(13)), int(rng.integers(5)), int(rng.integers(24)))


def _patches(image: np.ndarray, rng: np.random.Generator) -> None:
    """Translucent textured rectangles over the background."""
    h, w = image.shape[:2]
    for _ in range(int(rng.integers(2, 6))):
        pw, ph = int(rng.integers(w // 6, w // 2)), int(rng.integers(h // 6, h // 2))
        x, y = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
        look = _random_look(rng)
        main, accent = render.look_colours(look, rng)
        field = render.pattern_field(
            look.pattern,
            ph,
            pw,
            pw / 2,
            ph / 2,
            rng.uniform(4, 14),
            rng.uniform(0, 3),
            rng.random(),
        )[..., None]
        alpha = rng.uniform(0.25, 0.6)
        colour = main * (1 - field) + accent * field
        image[y : y + ph, x : x + pw] = image[y : y + ph, x : x + pw] * (1 - alpha) + colour * alpha


def _blob(image: np.ndarray, rng: np.random.Generator, cx: float, cy: float, size: float):
    """An object-like distractor: a patterned ellipse or irregular polygon of any hue."""
    h, w = image.shape[:2]
    if rng.random() < 0.5:
        n = int(rng.integers(5, 9))
        t = np.sort(rng.uniform(0, 2 * math.pi, n))
        r = rng.uniform(0.5, 1.0, n)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1) * size / 2 + (cx, cy)
        mask = np.zeros((h, w), np.uint8)
        render._fill(mask, pts, 255)
        mask = mask.astype(np.float32) / 255
    else:
        ax = size / 2 * rng.uniform(0.4, 1.0)
        mask = render.shape_mask(0, h, w, cx, cy, ax, size / 2, rng.uniform(0, math.pi))
    look = _random_look(rng)
    main, accent = render.look_colours(look, rng)
    field = render.pattern_field(
        look.pattern, h, w, cx, cy, size * 0.25, rng.uniform(0, 3), rng.random()
    )[..., None]
    colour = main * (1 - field) + accent * field
    image[:] = image * (1 - mask[..., None]) + colour * mask[..., None]
    return mask


def _partial(image, rng, look: Look, size: float):
    """A 30-50% slice of a real category's render: looks like a part, is not labelled."""
    h, w = image.shape[:2]
    layer = image.copy()
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    mask = render.draw_object(layer, look, cx, cy, size, rng, 1.0, rng.uniform(-0.25, 0.25))
    ang = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    keep = ((xs - cx) * math.cos(ang) + (ys - cy) * math.sin(ang)) > size * rng.uniform(0, 0.2)
    mask = mask * keep
    image[:] = image * (1 - mask[..., None]) + layer * mask[..., None]
    return mask


def detection_scene(
    looks: list[Look],
    labelled: list[int],
    partial_pool: list[int],
    rng: np.random.Generator,
    width: int,
    height: int,
) -> tuple[np.ndarray, list[SceneObject]]:
    """Render a scene containing ``labelled`` (indices into ``looks``); return image and boxes.

    Objects hidden below MIN_VISIBLE by later layers are dropped from the boxes.
    """
    image = render.blocky_background(height, width, rng)
    _patches(image, rng)
    owner = np.full((height, width), -1, np.int32)  # top-most labelled object per pixel
    coverage: dict[int, int] = {}
    layers = [("blob", None)] * int(rng.integers(6, 15))
    layers += [("part", int(rng.choice(partial_pool))) for _ in range(int(rng.integers(0, 4)))]
    layers += [("obj", i) for i in range(len(labelled))]
    for kind, arg in (layers[i] for i in rng.permutation(len(layers))):
        if kind == "blob":
            size = rng.uniform(8, 50)
            mask = _blob(image, rng, rng.uniform(0, width), rng.uniform(0, height), size)
        elif kind == "part":
            mask = _partial(image, rng, looks[arg], rng.uniform(20, 70))
        else:
            mask = _labelled(image, rng, looks[labelled[arg]])
            coverage[arg] = int((mask > 0.5).sum())
            owner[mask > 0.5] = arg
            if rng.random() < 0.35:
                mask = _occluder(image, rng, mask)
            else:
                continue
        owner[mask > 0.5] = -1
    objects = []
    for i, cat in enumerate(labelled):
        ys, xs = np.nonzero(owner == i)
        if coverage.get(i, 0) == 0 or len(xs) < MIN_VISIBLE * coverage[i]:
            continue
        box = SceneObject(cat, int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        if box.xmax - box.xmin + 1 >= MIN_BOX and box.ymax - box.ymin + 1 >= MIN_BOX:
            objects.append(box)
    return render.finish(image, rng, noise=0.025, blur=0.6), objects


def _labelled(image: np.ndarray, rng: np.random.Generator, look: Look) -> np.ndarray:
    h, w = image.shape[:2]
    size = math.exp(rng.uniform(math.log(18), math.log(80)))
    cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h
    aspect = math.exp(rng.uniform(-0.25, 0.25))
    return render.draw_object(image, look, cx, cy, size, rng, aspect, rng.uniform(-0.25, 0.25))


def _occluder(image: np.ndarray, rng: np.random.Generator, obj_mask: np.ndarray) -> np.ndarray:
    """A blob centred on a point of the object's edge."""
    ys, xs = np.nonzero((obj_mask > 0.3) & (obj_mask < 0.7))
    if len(xs) == 0:
        return np.zeros_like(obj_mask)
    i = int(rng.integers(len(xs)))
    extent = math.sqrt(float((obj_mask > 0.5).sum()) + 1)
    return _blob(image, rng, float(xs[i]), float(ys[i]), extent * rng.uniform(0.4, 0.8))
