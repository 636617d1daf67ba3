"""Detection categories: ``devkit/data/map_det.txt`` or the official ``meta_det.mat``."""

from __future__ import annotations

import io

from pipeline.data import layout
from pipeline.io import storage
from schemas.records import Category, DataError, Problem


def parse_map_det(text: str, url: str) -> list[Category]:
    """``<wnid> <index> <name…>`` per line; the name may contain spaces or be missing."""
    categories = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise DataError(
                Problem(url, "malformed-map", f"line {lineno}: expected '<wnid> <index> <name>'")
            )
        name = parts[2].strip() if len(parts) == 3 else parts[0]
        categories.append(Category(parts[0], int(parts[1]), name))
    return _checked(categories, url)


def parse_meta_det(data: bytes, url: str) -> list[Category]:
    """The devkit's ``synsets`` struct array; detection categories are its leaves.

    Fields read: ``ILSVRC20xx_DET_ID`` (any year), ``WNID``, ``name`` and, when present,
    ``num_children`` (internal nodes of the hierarchy have children and are not categories).
    """
    from scipy.io import loadmat

    try:
        synsets = loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)["synsets"]
    except Exception as exc:  # scipy raises several types for a bad file
        raise DataError(Problem(url, "malformed-meta", f"cannot read synsets: {exc}")) from exc
    categories = []
    for s in list(synsets) if hasattr(synsets, "__len__") else [synsets]:
        id_field = next((f for f in s._fieldnames if f.endswith("DET_ID")), None)
        if id_field is None or not hasattr(s, "WNID"):
            raise DataError(Problem(url, "malformed-meta", "synsets lack *_DET_ID / WNID fields"))
        if int(getattr(s, "num_children", 0) or 0) > 0:
            continue
        categories.append(Category(str(s.WNID), int(getattr(s, id_field)), str(s.name)))
    return _checked(sorted(categories, key=lambda c: c.index), url)


def _checked(categories: list[Category], url: str) -> list[Category]:
    if not categories:
        raise DataError(Problem(url, "empty-categories", "no detection categories listed"))
    seen: set[str] = set()
    for c in categories:
        if c.wnid in seen:
            raise DataError(Problem(url, "duplicate-category", f"{c.wnid} listed twice"))
        seen.add(c.wnid)
    return categories


def read_categories(root: str) -> list[Category]:
    """``map_det.txt`` if present, else ``meta_det.mat``; raises DataError naming the file."""
    map_url = storage.join(root, layout.MAP_DET)
    if storage.exists(map_url):
        return parse_map_det(storage.read_text(map_url), map_url)
    meta_url = storage.join(root, layout.META_DET)
    if storage.exists(meta_url):
        return parse_meta_det(storage.read_bytes(meta_url), meta_url)
    raise DataError(Problem(map_url, "missing-file", "neither map_det.txt nor meta_det.mat found"))


def write_map_det(root: str, categories: list[Category]) -> None:
    lines = [f"{c.wnid} {c.index} {c.name}" for c in categories]
    storage.write_text(storage.join(root, layout.MAP_DET), "\n".join(lines) + "\n")
