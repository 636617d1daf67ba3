"""Drawing primitives of the built-in world: shapes, fill patterns, objects, backgrounds.

Images are float32 RGB in [0, 1], HxWx3. Masks are anti-aliased coverage in [0, 1]; shapes
are filled with OpenCV at 1/16 pixel precision (``shift=4``).
"""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

from pipeline.toyworld.vocabulary import Look

_SHIFT = 4


def _circle(n: int = 40, r: float = 1.0, cx: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), r * np.sin(t)], 1)


def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False) + phase
    return np.stack([np.cos(t), np.sin(t)], 1)


def _star() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 10, endpoint=False) - math.pi / 2
    r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], 1)
    return pts / np.abs(pts).max(0)


def _poly(*xy: float) -> np.ndarray:
    return np.array(xy, dtype=np.float64).reshape(-1, 2)


# Each shape: outer polygon and an optional hole (ring, crescent), in [-1, 1]^2.
SHAPE_POLYGONS: tuple[tuple[np.ndarray, np.ndarray | None], ...] = (
    (_circle(), None),
    (_poly(-1, -1, 1, -1, 1, 1, -1, 1), None),
    (_poly(0, -1, 1, 0.85, -1, 0.85), None),
    (_poly(0, -1, 1, 0, 0, 1, -1, 0), None),
    (_regular(6), None),
    (_star(), None),
    (
        _poly(
            -0.33,
            -1,
            0.33,
            -1,
            0.33,
            -0.33,
            1,
            -0.33,
            1,
            0.33,
            0.33,
            0.33,
            0.33,
            1,
            -0.33,
            1,
            -0.33,
            0.33,
            -1,
            0.33,
            -1,
            -0.33,
            -0.33,
            -0.33,
        ),
        None,
    ),
    (_poly(-1, -0.3, 0.2, -0.3, 0.2, -0.85, 1, 0, 0.2, 0.85, 0.2, 0.3, -1, 0.3), None),
    (_poly(-1, -1, -0.3, -1, -0.3, 0.35, 1, 0.35, 1, 1, -1, 1), None),
    (
        _poly(-1, -1, 1, -1, 1, -0.35, 0.33, -0.35, 0.33, 1, -0.33, 1, -0.33, -0.35, -1, -0.35),
        None,
    ),
    (_heart(), None),
    (_circle(), _circle(r=0.55)),
    (_circle(), _circle(r=0.85, cx=0.45)),
)


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _fill(mask: np.ndarray, pts: np.ndarray, value: int) -> None:
    cv2.fillPoly(mask, [np.round(pts * (1 << _SHIFT)).astype(np.int32)], value, cv2.LINE_AA, _SHIFT)


def shape_mask(
    shape: int, h: int, w: int, cx: float, cy: float, sx: float, sy: float, angle: float
) -> np.ndarray:
    """Coverage in [0, 1] of a shape with half-sizes (sx, sy), rotated by ``angle`` radians."""
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    mask = np.zeros((h, w), np.uint8)
    outer, hole = SHAPE_POLYGONS[shape]
    for pts, value in ((outer, 255), (hole, 0)):
        if pts is not None:
            _fill(mask, (pts * (sx, sy)) @ rot.T + (cx, cy), value)
    return mask.astype(np.float32) / 255.0


def pattern_field(
    pattern: int, h: int, w: int, cx: float, cy: float, period: float, angle: float, phase: float
) -> np.ndarray:
    """1 where the pattern's second colour shows, in the object's own (rotated) frame."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    u = (xs - cx) * c + (ys - cy) * s
    v = -(xs - cx) * s + (ys - cy) * c
    a, b = u / period + phase, v / period + phase
    if pattern == 0:  # solid
        return np.zeros((h, w), np.float32)
    if pattern == 1:  # horizontal stripes
        field = np.sin(2 * math.pi * b)
    elif pattern == 2:  # diagonal stripes
        field = np.sin(2 * math.pi * (a + b) / math.sqrt(2))
    elif pattern == 3:  # checker
        field = np.sin(2 * math.pi * a) * np.sin(2 * math.pi * b)
    else:  # dots
        field = 0.6 - (((a % 1) - 0.5) ** 2 + ((b % 1) - 0.5) ** 2) * 4.5
    return np.clip(field * 3.0 + 0.5, 0.0, 1.0)


def look_colours(look: Look, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Main colour jittered within the hue family, and the pattern colour of the accent."""
    hue = look.hue / 24.0 + rng.uniform(-6, 6) / 360.0
    sat, val = rng.uniform(0.55, 0.95), rng.uniform(0.6, 0.95)
    main = hsv_to_rgb(hue, sat, val)
    accent = (
        hsv_to_rgb(hue, sat, val * 0.42),
        hsv_to_rgb(hue, sat * 0.35, min(1.0, val * 1.3)),
        np.full(3, 0.08, np.float32),
        np.full(3, 0.95, np.float32),
    )[look.accent]
    return main, accent


def draw_object(
    canvas: np.ndarray,
    look: Look,
    cx: float,
    cy: float,
    size: float,
    rng: np.random.Generator,
    aspect: float = 1.0,
    angle: float = 0.0,
) -> np.ndarray:
    """Paint an object of ``look`` onto ``canvas`` in place; return its coverage mask.

    ``size`` is the object's larger extent in pixels; work is confined to its bounding region.
    """
    h, w = canvas.shape[:2]
    sx, sy = size / 2 * min(1.0, aspect), size / 2 * min(1.0, 1 / aspect)
    r = size * 0.75 + 2
    x0, y0 = max(0, int(cx - r)), max(0, int(cy - r))
    x1, y1 = min(w, int(cx + r) + 1), min(h, int(cy + r) + 1)
    mask = np.zeros((h, w), np.float32)
    if x1 <= x0 or y1 <= y0:
        return mask
    lx, ly = cx - x0, cy - y0
    region = shape_mask(look.shape, y1 - y0, x1 - x0, lx, ly, sx, sy, angle)
    main, accent = look_colours(look, rng)
    period = size * (rng.uniform(0.2, 0.3) if look.scale == 0 else rng.uniform(0.09, 0.13))
    field = pattern_field(look.pattern, y1 - y0, x1 - x0, lx, ly, period, angle, rng.random())
    colour = main * (1 - field[..., None]) + accent * field[..., None]
    ys, xs = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
    ga = rng.uniform(0, 2 * math.pi)
    shade = 1.0 + 0.15 * ((xs - lx) * math.cos(ga) + (ys - ly) * math.sin(ga)) / max(size, 1)
    colour = np.clip(colour * shade[..., None], 0, 1)
    sub = canvas[y0:y1, x0:x1]
    sub[:] = sub * (1 - region[..., None]) + colour * region[..., None]
    mask[y0:y1, x0:x1] = region
    return mask


def smooth_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A two-colour gradient with low-frequency variation: classification backgrounds."""
    c0 = hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.5), rng.uniform(0.3, 0.95))
    c1 = hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.5), rng.uniform(0.3, 0.95))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ga = rng.uniform(0, 2 * math.pi)
    t = ((xs / w - 0.5) * math.cos(ga) + (ys / h - 0.5) * math.sin(ga)) + 0.5
    low = cv2.resize(rng.normal(0, 0.06, (3, 3, 3)).astype(np.float32), (w, h))
    return np.clip(c0 * (1 - t[..., None]) + c1 * t[..., None] + low, 0, 1).astype(np.float32)


def blocky_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Blocks of colour, smoothed a little: the cluttered look of detection scenes."""
    gh, gw = rng.integers(3, 9), rng.integers(3, 9)
    hues = rng.random((gh, gw))
    grid = np.stack(
        [
            hsv_to_rgb(hues[i, j], rng.uniform(0.05, 0.7), rng.uniform(0.25, 0.95))
            for i in range(gh)
            for j in range(gw)
        ]
    ).reshape(gh, gw, 3)
    interp = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(grid.astype(np.float32), (w, h), interpolation=interp)


def finish(image: np.ndarray, rng: np.random.Generator, noise: float, blur: float) -> np.ndarray:
    """Noise and a slight blur, then 8-bit RGB."""
    if blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    image = image + rng.normal(0, noise, image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
