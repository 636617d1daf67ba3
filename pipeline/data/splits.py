"""``val1.txt`` / ``val2.txt``: one image name per line, optionally followed by an index."""

from __future__ import annotations

from pipeline.data import layout
from pipeline.io import storage
from schemas.records import DataError, Problem


def parse_split(text: str, url: str) -> list[str]:
    names = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise DataError(Problem(url, "malformed-split", f"line {lineno}: '<name> [index]'"))
        name = parts[0]
        for suffix in layout.IMAGE_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
        names.append(name)
    if not names:
        raise DataError(Problem(url, "empty-split", "the split lists no image"))
    return names


def read_split(root: str, name: str) -> list[str]:
    url = storage.join(root, layout.split_file(name))
    if not storage.exists(url):
        raise DataError(Problem(url, "missing-file", f"split file {name}.txt not found"))
    return parse_split(storage.read_text(url), url)
