"""Classification images: ``CLS/train/<wnid>/<name>.JPEG`` folders, or ``<wnid>.tar`` files.

Tar members are indexed by offset and size from their headers alone (``tar_index``), so a
later stage reads a member with one ranged request. Members with absolute paths or ``..`` are
refused. These readers walk a dataset in the calling process (``lsda check-data``, tests); the
extraction indexes a dataset in parallel and caches the tars' indexes (``cls_index``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection
from dataclasses import dataclass, field

from pipeline.data import layout
from pipeline.data.tar_index import BLOCK, scan_tar
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


def folder_entries(url: str, wnid: str | None = None) -> ClsIndex:
    """The images under ``url``: ``<wnid>/<name>.JPEG``, or ``<name>.JPEG`` if ``wnid`` is given
    (one class folder). One recursive listing; local links are followed (``find_files``)."""
    files, problems = storage.find_files(url)
    index = ClsIndex(problems=problems)
    base = storage.get_fs(url)[1].rstrip("/") + "/"
    for file_url in files:
        rel = storage.get_fs(file_url)[1][len(base) :]
        parts = [wnid, *rel.split("/")] if wnid else rel.split("/")
        if len(parts) != 2 or not rel.lower().endswith(layout.IMAGE_SUFFIXES):
            index.problems.append(Problem(file_url, "unexpected-file", "not <wnid>/<image>"))
            continue
        index.images.append(ClsImage(parts[0], posixpath.splitext(parts[1])[0], file_url))
    return index


def read_cls_folders(url: str, known_wnids: Collection[str] | None = None) -> ClsIndex:
    """``<url>/<wnid>/<name>.JPEG``: one recursive listing."""
    found = folder_entries(url)
    index = ClsIndex(problems=found.problems)
    for image in found.images:
        if known_wnids is not None and image.wnid not in known_wnids:
            problem = Problem(image.url, "unknown-category", f"{image.wnid} not known")
            index.problems.append(problem)
        else:
            index.images.append(image)
    return index


def _unsafe(name: str) -> bool:
    return name.startswith("/") or ".." in name.split("/")


def tar_entries(url: str, wnid: str, tar_size: int | None = None) -> tuple[ClsIndex, int]:
    """The images of one ``<wnid>.tar`` and its problems, from its headers alone; and the
    bytes read to find them. A storage error raises."""
    index = ClsIndex()
    fs, path = storage.get_fs(url)
    tar_size = fs.size(path) if tar_size is None else tar_size
    # cache_type "none": each header is one ranged read of 512 bytes, no read-ahead. A read
    # that fails (after the client's retries) raises: the tar is not bad, only unread this
    # time, and its images must not drop out of the split; the next run reads it again.
    with fs.open(path, "rb", block_size=BLOCK, cache_type="none") as f:

        def read_at(offset: int, n: int) -> bytes:
            f.seek(offset)
            return f.read(n)

        scan = scan_tar(read_at, tar_size)
    for member in scan.members:
        where = f"{url}:{member.name}"
        if member.kind == "dir":
            continue
        if _unsafe(member.name):
            index.problems.append(Problem(where, "unsafe-tar-member", "absolute or '..'"))
        elif member.kind != "file" or not member.name.lower().endswith(layout.IMAGE_SUFFIXES):
            index.problems.append(Problem(where, "unexpected-file", f"{member.kind}, not an image"))
        else:
            name = posixpath.splitext(posixpath.basename(member.name))[0]
            index.images.append(ClsImage(wnid, name, url, member.offset_data, member.size))
    for name, kind, message in scan.problems:
        index.problems.append(Problem(f"{url}:{name}" if name else url, kind, message))
    return index, scan.bytes_read


def read_cls_tars(url: str, known_wnids: Collection[str] | None = None) -> ClsIndex:
    """``<url>/<wnid>.tar`` (the full-ImageNet release)."""
    index = ClsIndex()
    for tar_url in storage.find(url, (".tar",)):
        wnid = posixpath.splitext(posixpath.basename(tar_url))[0]
        if known_wnids is not None and wnid not in known_wnids:
            index.problems.append(Problem(tar_url, "unknown-category", f"{wnid} not known"))
            continue
        part, _ = tar_entries(tar_url, wnid)
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
    data = read_cls_many([image])[0]
    if isinstance(data, Exception):
        raise data
    return data


def read_cls_many(images: list[ClsImage]) -> list[bytes | Exception]:
    """The bytes of many images in two batched calls (files, then tar members by byte range),
    which s3fs runs as concurrent requests; a failed read is returned as its exception."""
    out: list[bytes | Exception] = [b""] * len(images)
    files = [i for i, image in enumerate(images) if not image.in_tar]
    got_files = storage.read_many([images[i].url for i in files])
    for i in files:
        out[i] = got_files[images[i].url]
    members = [i for i, image in enumerate(images) if image.in_tar]
    if members:
        fs, _ = storage.get_fs(images[members[0]].url)
        got = fs.cat_ranges(
            [storage.get_fs(images[i].url)[1] for i in members],
            [images[i].offset for i in members],
            [images[i].offset + images[i].size for i in members],
            on_error="return",
        )
        for i, data in zip(members, got, strict=True):
            image = images[i]
            if not isinstance(data, Exception) and len(data) != image.size:
                problem = Problem(image.url, "truncated-tar", f"member {image.name} is truncated")
                data = DataError(problem)
            out[i] = data
    return out
