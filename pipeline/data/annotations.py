"""PASCAL VOC / ILSVRC annotation XML: parse one file into boxes, or say exactly what is wrong."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Collection

from schemas.records import Box, DataError, Problem


def _int(node: ET.Element | None, tag: str, url: str) -> int:
    text = node.findtext(tag) if node is not None else None
    if text is None or not text.strip():
        raise DataError(Problem(url, "malformed-xml", f"missing <{tag}>"))
    try:
        return int(float(text))
    except ValueError as exc:
        raise DataError(
            Problem(url, "malformed-xml", f"<{tag}> is not a number: {text!r}")
        ) from exc


def parse_annotation(
    data: bytes, url: str, known_wnids: Collection[str] | None = None
) -> tuple[int, int, tuple[Box, ...]]:
    """Return (width, height, boxes); raise DataError naming ``url`` and the problem.

    Boxes must lie inside the image with xmin <= xmax, ymin <= ymax (0-based inclusive pixels).
    """
    # DTDs enable entity-expansion attacks; annotation files never need them.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise DataError(Problem(url, "malformed-xml", "DTD / entity declarations are refused"))
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise DataError(Problem(url, "malformed-xml", f"not well-formed XML ({exc})")) from exc
    if root.tag != "annotation":
        raise DataError(Problem(url, "malformed-xml", f"root element is <{root.tag}>"))
    size = root.find("size")
    width, height = _int(size, "width", url), _int(size, "height", url)
    if width <= 0 or height <= 0:
        raise DataError(Problem(url, "invalid-size", f"image size {width}x{height}"))
    boxes = tuple(
        _parse_object(obj, url, width, height, known_wnids) for obj in root.iter("object")
    )
    return width, height, boxes


def _parse_object(
    obj: ET.Element, url: str, width: int, height: int, known: Collection[str] | None
) -> Box:
    wnid = (obj.findtext("name") or "").strip()
    if not wnid:
        raise DataError(Problem(url, "malformed-xml", "<object> without <name>"))
    if known is not None and wnid not in known:
        raise DataError(Problem(url, "unknown-category", f"{wnid} is not a detection category"))
    bb = obj.find("bndbox")
    if bb is None:
        raise DataError(Problem(url, "malformed-xml", f"<object> {wnid} without <bndbox>"))
    box = Box(wnid, *(_int(bb, t, url) for t in ("xmin", "ymin", "xmax", "ymax")))
    if box.xmin > box.xmax or box.ymin > box.ymax:
        raise DataError(Problem(url, "invalid-box", f"{_fmt(box)}: min > max"))
    if box.xmin < 0 or box.ymin < 0 or box.xmax >= width or box.ymax >= height:
        raise DataError(
            Problem(url, "invalid-box", f"{_fmt(box)} lies outside the {width}x{height} image")
        )
    return box


def _fmt(b: Box) -> str:
    return f"box {b.wnid} ({b.xmin},{b.ymin},{b.xmax},{b.ymax})"


def annotation_xml(filename: str, folder: str, width: int, height: int, boxes: list[Box]) -> str:
    """Write the ILSVRC form; the built-in dataset and the tests' fixtures use it."""
    objects = "".join(
        f"<object><name>{b.wnid}</name><bndbox><xmin>{b.xmin}</xmin><ymin>{b.ymin}</ymin>"
        f"<xmax>{b.xmax}</xmax><ymax>{b.ymax}</ymax></bndbox></object>"
        for b in boxes
    )
    return (
        f"<annotation><folder>{folder}</folder><filename>{filename}</filename>"
        f"<source><database>ILSVRC_2013</database></source>"
        f"<size><width>{width}</width><height>{height}</height></size>{objects}</annotation>\n"
    )
