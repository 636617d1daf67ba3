"""Classification images: ``CLS/train/<wnid>/<name>.JPEG`` folders, or ``<wnid>.tar`` files.

Tar members are indexed by offset and size (one header walk per tar), so training reads a
member with one ranged request. Members with absolute paths or ``..`` are refused.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Collection
from dataclasses import dataclass, field

from pipeline.data import layout
from pipeline.io import storage
from schemas.records import ClsImage, DataError, Problem


@dataclass
class ClsIndex:
    images: list[ClsImage] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def per_class(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for img in self.images:
            counts[img.wnid] = counts.get(img.wnid, 0) + 1
        return counts


def read_cls_folders(url: str, known_wnids: Collection[str] | None = None) -> ClsIndex:
    """``<url>/<wnid>/<name>.JPEG``: one recursive listing."""
    index = ClsIndex()
    base = storage.get_fs(url)[1].rstrip("/") + "/"
    for file_url in storage.find(url):
        rel = storage.get_fs(file_url)[1][len(base) :]
        parts = rel.split("/")
        if len(parts) != 2 or not rel.lower().endswith(layout.IMAGE_SUFFIXES):
            index.problems.append(Problem(file_url, "unexpected-file", "not <wnid>/<image>"))
            continue
        wnid, name = parts[0], posixpath.splitext(parts[1])[0]
        if known_wnids is not None and wnid not in known_wnids:
            index.problems.append(Problem(file_url, "unknown-category", f"{wnid} not known"))
            continue
        index.images.append(ClsImage(wnid, name, file_url))
    return index


def _unsafe(name: str) -> bool:
    return name.startswith("/") or ".." in name.split("/")


def index_tar(url: str, wnid: str) -> ClsIndex:
    index = ClsIndex()
    fs, path = storage.get_fs(url)
    try:
        with fs.open(path, "rb", block_size=1 << 20) as f, tarfile.open(fileobj=f, mode="r:") as t:
            for member in t:
                if _unsafe(member.name):
                    index.problems.append(
                        Problem(f"{url}:{member.name}", "unsafe-tar-member", "absolute or '..'")
                    )
                elif member.isfile() and member.name.lower().endswith(layout.IMAGE_SUFFIXES):
                    name = posixpath.splitext(posixpath.basename(member.name))[0]
                    index.images.append(ClsImage(wnid, name, url, member.offset_data, member.size))
    except (tarfile.TarError, OSError) as exc:
        index.problems.append(Problem(url, "bad-tar", f"{type(exc).__name__}: {exc}"))
    return index


def read_cls_tars(url: str, known_wnids: Collection[str] | None = None) -> ClsIndex:
    """``<url>/<wnid>.tar`` (the full-ImageNet release)."""
    index = ClsIndex()
    for tar_url in storage.find(url, (".tar",)):
        wnid = posixpath.splitext(posixpath.basename(tar_url))[0]
        if known_wnids is not None and wnid not in known_wnids:
            index.problems.append(Problem(tar_url, "unknown-category", f"{wnid} not known"))
            continue
        part = index_tar(tar_url, wnid)
        index.images += part.images
        index.problems += part.problems
    return index


def read_cls_images(root: str, known_wnids: Collection[str] | None = None) -> ClsIndex:
    """Both layouts under a dataset root; a synset may come from either."""
    index = read_cls_folders(storage.join(root, layout.CLS_TRAIN), known_wnids)
    tars = read_cls_tars(storage.join(root, layout.CLS_TARS), known_wnids)
    index.images += tars.images
    index.problems += tars.problems
    if not index.images:
        index.problems.append(Problem(storage.join(root, "CLS"), "empty-split", "no cls images"))
    return index


def read_cls_bytes(image: ClsImage) -> bytes:
    """The image's encoded bytes, with a ranged read for a tar member."""
    if not image.in_tar:
        return storage.read_bytes(image.url)
    fs, path = storage.get_fs(image.url)
    data = fs.cat_file(path, start=image.offset, end=image.offset + image.size)
    if len(data) != image.size:
        raise DataError(Problem(image.url, "truncated-tar", f"member {image.name} is truncated"))
    return data
