"""The WordNet hierarchy of the ImageNet release: ``words.txt`` and ``wordnet.is_a.txt``."""

from __future__ import annotations

from pipeline.data import layout
from pipeline.io import storage
from schemas.records import DataError, Hierarchy, Problem


def parse_words(text: str) -> dict[str, str]:
    names = {}
    for line in text.splitlines():
        if line.strip():
            wnid, _, name = line.partition("\t")
            names[wnid.strip()] = name.strip()
    return names


def parse_is_a(text: str, url: str, names: dict[str, str] | None = None) -> Hierarchy:
    hierarchy = Hierarchy(names=dict(names or {}))
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(Problem(url, "malformed-is-a", f"line {lineno}: '<parent> <child>'"))
        parent, child = parts
        hierarchy.children.setdefault(parent, []).append(child)
        hierarchy.parents.setdefault(child, []).append(parent)
    return hierarchy


def read_hierarchy(root: str) -> Hierarchy:
    words_url = storage.join(root, layout.WORDS)
    is_a_url = storage.join(root, layout.IS_A)
    for url in (words_url, is_a_url):
        if not storage.exists(url):
            raise DataError(Problem(url, "missing-file", "hierarchy file not found"))
    names = parse_words(storage.read_text(words_url))
    return parse_is_a(storage.read_text(is_a_url), is_a_url, names)
