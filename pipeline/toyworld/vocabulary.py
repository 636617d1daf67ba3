"""Categories of the built-in world: shape x fill pattern x hue (x accent x pattern scale).

Detection categories come from 6 well-separated hue families with the default accent; the
leaf vocabulary fills the finer attribute space (24 hues, 4 accents, 2 pattern scales), like
ImageNet's fine-grained leaves. Names start with a made-up codename so that the alphabetical
split into B (boxes) and A (no boxes) is a seeded random split, as in the paper, and not a
split by colour or shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.records import Category, Hierarchy

SHAPES = (
    "circle",
    "square",
    "triangle",
    "diamond",
    "hexagon",
    "star",
    "plus",
    "arrow",
    "ell",
    "tee",
    "heart",
    "ring",
    "crescent",
)
PATTERNS = ("solid", "striped", "slanted", "checkered", "dotted")
HUE_NAMES = (
    "red",
    "vermilion",
    "orange",
    "amber",
    "yellow",
    "lime",
    "chartreuse",
    "green",
    "emerald",
    "jade",
    "teal",
    "cyan",
    "azure",
    "sky",
    "blue",
    "cobalt",
    "indigo",
    "violet",
    "purple",
    "magenta",
    "fuchsia",
    "pink",
    "rose",
    "crimson",
)
ACCENTS = ("dark", "light", "black", "white")
SCALES = ("coarse", "fine")
DET_HUES = (0, 4, 8, 12, 16, 20)  # 60 degrees apart
ROOT = "n80000000"
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


@dataclass(frozen=True)
class Look:
    """How a category is drawn."""

    shape: int
    pattern: int
    hue: int  # 0..23, 15 degrees each
    accent: int = 0
    scale: int = 0

    def describe(self) -> str:
        accent = "" if self.accent == 0 else f"{ACCENTS[self.accent]}-accented "
        scale = "" if self.scale == 0 else "fine "
        return f"{accent}{HUE_NAMES[self.hue]} {scale}{PATTERNS[self.pattern]} {SHAPES[self.shape]}"


@dataclass(frozen=True)
class ToyCategory:
    wnid: str
    name: str  # map_det form: "<codename>_<hue>_<pattern>_<shape>"
    look: Look
    detection: bool


def _codenames(rng: np.random.Generator, n: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        word = "".join(rng.choice(_SYLLABLES, size=3))
        if word not in seen:
            seen.add(word)
            names.append(word)
    return names


def build_vocabulary(seed: int, det_categories: int, leaf_categories: int) -> list[ToyCategory]:
    """Detection categories first (in wnid order), then leaf categories; deterministic."""
    rng = np.random.default_rng([seed, 7])
    det_looks = [Look(s, p, h) for s in range(13) for p in range(5) for h in DET_HUES]
    det_order = rng.permutation(len(det_looks))[:det_categories]
    det_set = {det_looks[i] for i in det_order}
    leaf_looks = [
        Look(s, p, h, a, sc)
        for s in range(13)
        for p in range(5)
        for h in range(24)
        for a in range(4)
        for sc in range(2)
    ]
    leaf_looks = [lk for lk in leaf_looks if lk not in det_set]
    if leaf_categories > len(leaf_looks):
        raise ValueError(f"at most {len(leaf_looks)} leaf categories can be drawn")
    leaf_order = rng.permutation(len(leaf_looks))[:leaf_categories]
    looks = [det_looks[i] for i in det_order] + [leaf_looks[i] for i in leaf_order]
    codes = _codenames(rng, len(looks))
    return [
        ToyCategory(
            f"n9{i:07d}", f"{code}_{look.describe().replace(' ', '_')}", look, i < det_categories
        )
        for i, (code, look) in enumerate(zip(codes, looks, strict=True))
    ]


def family_wnid(shape: int) -> str:
    return f"n8{shape + 1:07d}"


def detection_categories(vocab: list[ToyCategory]) -> list[Category]:
    """map_det.txt order: sorted by name, indices 1..K."""
    det = sorted((c for c in vocab if c.detection), key=lambda c: c.name)
    return [Category(c.wnid, i, c.name) for i, c in enumerate(det, 1)]


def hierarchy(vocab: list[ToyCategory]) -> Hierarchy:
    """root -> shape families -> categories."""
    h = Hierarchy(names={ROOT: "toy object"})
    for shape in sorted({c.look.shape for c in vocab}):
        fam, shape_name = family_wnid(shape), SHAPES[shape]
        h.names[fam] = shape_name
        h.children.setdefault(ROOT, []).append(fam)
        h.parents[fam] = [ROOT]
    for c in vocab:
        fam = family_wnid(c.look.shape)
        h.names[c.wnid] = c.name.replace("_", ", ", 1).replace("_", " ")
        h.children.setdefault(fam, []).append(c.wnid)
        h.parents[c.wnid] = [fam]
    return h
