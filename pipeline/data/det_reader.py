"""Detection images with their boxes: DET train (folder per synset) and DET val (flat).

One recursive listing of the images and one of the annotations serve the whole split; the
XML files are then fetched concurrently. Every image ends up as an ImageAnnotation, as a
Problem naming its file (promise 4), or, when its XML could not be read this time (a storage
error after the client's retries), as *pending*: still an input of the split, read again
later, so that one failed GET never changes what the split holds.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection
from dataclasses import dataclass, field

from pipeline.data import layout, splits
from pipeline.data.annotations import parse_annotation
from pipeline.io import storage
from schemas.records import DataError, ImageAnnotation, Problem


@dataclass
class DetSplit:
    annotations: list[ImageAnnotation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    pending: list[Problem] = field(default_factory=list)  # the image's URL, the read error

    def raise_first(self) -> None:
        if self.problems or self.pending:
            raise DataError((self.problems or self.pending)[0])

    def raise_pending(self) -> None:
        """For readers that cannot go on without every annotation (evaluation)."""
        if self.pending:
            p = self.pending[0]
            raise OSError(
                f"{len(self.pending)} annotations could not be read (first: {p.message}); "
                "nothing was written, run again"
            )


_DIRS = {
    "det-train": (layout.DET_TRAIN_IMAGES, layout.DET_TRAIN_BOXES),
    "val": (layout.DET_VAL_IMAGES, layout.DET_VAL_BOXES),
}


def _stem_map(base_url: str, urls: list[str]) -> dict[str, str]:
    """Relative path without suffix -> URL (``n0123/n0123_5`` or ``ILSVRC2013_val_00000001``)."""
    base = storage.get_fs(base_url)[1].rstrip("/") + "/"
    out = {}
    for url in urls:
        rel = storage.get_fs(url)[1][len(base) :]
        out[posixpath.splitext(rel)[0]] = url
    return out


def det_train_folders(root: str) -> tuple[list[str], list[Problem]]:
    """The synset folders of DET train (of its images or of its boxes), and stray files found
    beside them: two listings of one level."""
    names: set[str] = set()
    problems = []
    for sub in _DIRS["det-train"]:
        url = storage.join(root, sub)
        for e in storage.ls(url):
            if e["type"] == "directory":
                names.add(posixpath.basename(e["name"].rstrip("/")))
            else:
                where = storage.to_url(url, e["name"])
                problems.append(Problem(where, "unexpected-file", "not in a synset folder"))
    return sorted(names), problems


def _find(url: str, suffixes: tuple[str, ...], folders: list[str] | None) -> list[str]:
    if folders is None:
        return storage.find(url, suffixes)
    return [u for f in folders for u in storage.find(storage.join(url, f), suffixes)]


def read_det_split(
    root: str,
    split: str,
    known_wnids: Collection[str] | None = None,
    strict: bool = False,
    folders: list[str] | None = None,
) -> DetSplit:
    """Read ``det-train``, ``val`` or a named subset of val (``val1``, ``val2``, …).

    ``known_wnids`` (the detection categories) turns unknown object names into problems.
    With ``strict`` the first problem raises a DataError naming the file. ``folders`` limits
    DET train to those synset folders (one Ray task reads a group of them); ``[]``: none, an
    empty split.
    """
    image_dir, box_dir = _DIRS["det-train" if split == "det-train" else "val"]
    image_url, box_url = storage.join(root, image_dir), storage.join(root, box_dir)
    images = _stem_map(image_url, _find(image_url, layout.IMAGE_SUFFIXES, folders))
    xmls = _stem_map(box_url, _find(box_url, (".xml",), folders))
    result = DetSplit()
    if split in _DIRS:
        wanted = sorted(images.keys() | xmls.keys())
    else:
        try:
            wanted = splits.read_split(root, split)
        except DataError as exc:
            if strict:
                raise
            result.problems.append(exc.problem)
            wanted = []
    if not wanted and not result.problems and not folders:  # a folder group is not the split
        result.problems.append(Problem(image_url, "empty-split", f"no images for split {split}"))
    contents = storage.read_many([xmls[s] for s in wanted if s in xmls and s in images])
    for stem in wanted:
        _account(stem, split, images, xmls, contents, known_wnids, result, image_url)
    if strict:
        result.raise_first()
    return result


def _account(stem, split, images, xmls, contents, known, result: DetSplit, image_dir) -> None:
    image, xml = images.get(stem), xmls.get(stem)
    if image is None:
        where = xml or storage.join(image_dir, stem)
        result.problems.append(Problem(where, "missing-image", f"no image file for {stem}"))
        return
    if xml is None:
        result.problems.append(Problem(image, "missing-annotation", "no annotation XML"))
        return
    data = contents[xml]
    if isinstance(data, Exception):
        if isinstance(data, FileNotFoundError):  # listed a moment ago: deleted since
            result.problems.append(Problem(xml, "missing-annotation", "deleted while read"))
        else:
            message = f"{xml}: {type(data).__name__}: {data}"
            result.pending.append(Problem(image, "read-error", message))
        return
    try:
        width, height, boxes = parse_annotation(data, xml, known)
    except DataError as exc:
        result.problems.append(exc.problem)
        return
    image_id = posixpath.basename(stem)
    result.annotations.append(ImageAnnotation(image_id, split, image, xml, width, height, boxes))
