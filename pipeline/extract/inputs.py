"""A split's inputs as Arrow tables in Ray's object store, read by Ray tasks: the driver lists
folders and adds up counts, and never holds an image's row or an annotation's bytes.

- ``cls``: the synsets' folders and tars, indexed in parallel (``pipeline.data.cls_index``).
- ``det-train``: one task per group of synset folders reads their annotations, keeps set B's
  boxes (``only_boxes_of``) and caps the images per synset (``cap_per_class``); both act per
  image or per folder, so a task needs nothing from the others. The folders of the categories
  without boxes are not read for set B (``folders_without_boxes``).
- ``val`` and its subsets (20K images, one flat folder): one task.
- ``mil``: the ``cls`` index, and one task per index table samples its held-out categories'
  images (``sample_bags``).
"""

from __future__ import annotations

import hashlib
import json
import posixpath

import pyarrow as pa

from pipeline.data.categories import read_categories
from pipeline.data.cls_index import index_cls
from pipeline.data.cls_reader import read_cls_images
from pipeline.data.det_reader import det_train_folders, read_det_split
from pipeline.io import storage
from pipeline.workdir import MIL_SPLIT, WorkDir
from schemas.config import ExtractConfig
from schemas.records import Problem

FOLDERS_PER_TASK = 16  # DET train synset folders per read task (~8K annotations)
DET_INPUT_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("image_url", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("boxes", pa.string()),  # JSON: [[wnid, xmin, ymin, xmax, ymax], ...]
        ("pending", pa.string()),  # why its annotation is not here yet ("": it is)
    ]
)


def only_boxes_of(items: list[dict], wnids: list[str]) -> list[dict]:
    """``items`` with the boxes of other categories removed: the paper's set A has no boxes, so
    its objects are whatever set B's boxes make them (background unless they overlap one)."""
    keep = set(wnids)
    return [{**it, "boxes": [b for b in it["boxes"] if b[0] in keep]} for it in items]


def folders_without_boxes(data: str, boxes_of: list[str] | str) -> set[str]:
    """DET train's synset folders that windows labelled with ``boxes_of`` leave out: those of
    the detection categories without boxes (set A, held back ones included). ImageNet's DET
    train is one folder per category, and a folder holds images of its category: the paper
    trains on set B's detection data only, and read here they would turn set A's objects into
    background windows of the fine-tunes and into negatives of their own rows in ``lsda mil``'s
    pool. The oracle (``"all"``) reads every folder."""
    if boxes_of == "all":
        return set()
    return {c.wnid for c in read_categories(data)} - set(boxes_of)


def load_inputs(data: str, split: str) -> tuple[list[dict], list[Problem]]:
    """Items to extract (JSON-able dicts sorted by image id) and the readers' problems."""
    if split == "cls":
        index = read_cls_images(data)
        items = [
            {
                "image_id": f"{i.wnid}/{i.name}",
                "image_url": i.url,
                "wnid": i.wnid,
                "name": i.name,
                "offset": i.offset,
                "size": i.size,
            }
            for i in index.images
        ]
        problems = index.problems
    else:
        items, problems = _det_items(data, split)
    return sorted(items, key=lambda it: it["image_id"]), problems


def _det_items(
    data: str, split: str, folders: list[str] | None = None
) -> tuple[list[dict], list[Problem]]:
    """The annotated images of ``split`` (of ``folders`` only, for DET train) as dicts."""
    known = {c.wnid for c in read_categories(data)}
    result = read_det_split(data, split, known, folders=folders)
    items = [
        {
            "image_id": a.image_id,
            "image_url": a.image_url,
            "width": a.width,
            "height": a.height,
            "boxes": [[b.wnid, b.xmin, b.ymin, b.xmax, b.ymax] for b in a.boxes],
            "pending": "",
        }
        for a in result.annotations
    ]
    # An annotation that could not be read keeps its image in the split (same plan, same
    # fingerprint): its shard quarantines it as a read error and the next run retries it.
    items += [
        {
            "image_id": storage.stem(p.url),
            "image_url": p.url,
            "width": -1,
            "height": -1,
            "boxes": [],
            "pending": f"{p.kind}: annotation {p.message}",
        }
        for p in result.pending
    ]
    return items, result.problems


def cap_per_class(items: list[dict], limit: int) -> list[dict]:
    """At most ``limit`` det-train images per synset folder (the paper's "up to 1000 train
    images per class"), chosen by a hash of the image id: deterministic, and not biased
    towards the start of the alphabet as a plain prefix would be."""
    if limit <= 0:
        return items
    by_class: dict[str, list[dict]] = {}
    for it in items:
        by_class.setdefault(posixpath.basename(posixpath.dirname(it["image_url"])), []).append(it)
    kept = []
    for group in by_class.values():
        group.sort(key=lambda it: hashlib.sha1(it["image_id"].encode()).hexdigest())
        kept += group[:limit]
    return sorted(kept, key=lambda it: it["image_id"])


def det_table(
    data: str, split: str, boxes_of: list[str] | str, cap: int, folders: list[str] | None
) -> tuple[pa.Table, int, list[Problem]]:
    """A read task: the annotated images of ``split`` (of ``folders`` only, for DET train) as
    one table (boxes as JSON); its row count and the readers' problems."""
    items, problems = _det_items(data, split, folders)
    if boxes_of != "all":  # set A's boxes stop here: no later stage can read them
        items = only_boxes_of(items, boxes_of)
    if split == "det-train":
        items = cap_per_class(items, cap)
    rows = [{**it, "boxes": json.dumps(it["boxes"])} for it in items]
    table = pa.Table.from_pylist(rows, schema=DET_INPUT_SCHEMA)
    return table, table.num_rows, problems


def sample_key(seed: int, image_id: str) -> str:
    """The order a category's bags are drawn in: seeded, independent of the listing."""
    return hashlib.sha1(f"{seed}:{image_id}".encode()).hexdigest()


def sample_bags(
    table: pa.Table, exclude: list[str], only: list[str] | None, per_category: int, seed: int
) -> tuple:
    """A read task: the ``mil`` split's images in one cls index table (whole synsets): every
    category outside ``exclude`` (set B, held back; of ``only`` unless None), at most
    ``per_category`` images each,
    the first by ``sha1(f"{seed}:{image_id}")``: a seeded sample, the same whatever the
    listing's order. The sample is drawn from the images the readers listed: those they
    refused are the ``cls`` split's manifest's. Returns the table and its row count."""
    skip, keep = set(exclude), None if only is None else set(only)
    rows = [
        r
        for r in table.to_pylist()
        if r["wnid"] and r["wnid"] not in skip and (keep is None or r["wnid"] in keep)
    ]
    by_wnid: dict[str, list[dict]] = {}
    for r in rows:
        by_wnid.setdefault(r["wnid"], []).append(r)
    kept = []
    for group in by_wnid.values():
        group.sort(key=lambda r: sample_key(seed, r["image_id"]))
        kept += group[:per_category]
    out = pa.Table.from_pylist(kept, schema=table.schema)
    return out, out.num_rows


def split_inputs(
    data: str,
    work: str,
    split: str,
    cfg: ExtractConfig,
    boxes_of: list[str] | str,
    bags: tuple = ([], None, 0),
) -> tuple[list, list[int], list[Problem], list[str]]:
    """``split``'s input tables (object refs), their row counts, the problems found and the
    DET train folders left out (``folders_without_boxes``). ``bags`` (``mil``):
    ``sample_bags``' categories to leave out, to keep, images per one."""
    import ray

    if split in ("cls", MIL_SPLIT):
        refs, counts, problems = index_cls(data, WorkDir(work).index("cls"))
        if split == "cls":
            return refs, [c["rows"] for c in counts], problems, []
        task = ray.remote(num_cpus=1, num_returns=2)(sample_bags)
        pending = [task.remote(ref, *bags, cfg.seed) for ref in refs]
        return [p[0] for p in pending], ray.get([p[1] for p in pending]), problems, []
    problems: list[Problem] = []
    groups: list[list[str] | None] = [None]
    left_out: list[str] = []
    if split == "det-train":
        folders, problems = det_train_folders(data)
        skip = folders_without_boxes(data, boxes_of)
        left_out = [f for f in folders if f in skip]
        folders = [f for f in folders if f not in skip]
        step = FOLDERS_PER_TASK
        groups = [folders[i : i + step] for i in range(0, len(folders), step)] or [[]]
    task = ray.remote(num_cpus=1, num_returns=3)(det_table)
    pending = [task.remote(data, split, boxes_of, cfg.train_images_per_class, g) for g in groups]
    counts = ray.get([p[1] for p in pending])
    for p in ray.get([p[2] for p in pending]):
        problems += p
    return [p[0] for p in pending], counts, problems, left_out
