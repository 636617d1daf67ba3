"""The classification images of a dataset root, indexed in parallel: one Arrow table per group
of synsets, built by Ray tasks, never gathered in the driver.

The driver lists only the two top-level folders (``CLS/train/`` and ``CLS/tars/``: one entry
per synset, with each tar's size and ETag or mtime). Ray tasks then list the class folders and
scan the tars' headers (``tar_index``). A tar's index is cached as
``WORK/index/cls/<wnid>-<key>.parquet``, ``key`` a hash of the tar's URL, size and ETag/mtime:
a later run reads the cached index instead of the tar, and a changed tar (new key) is indexed
again, alone. Class folders are listed on every run (a listing is what shows their changes).

Each index table holds one row per image or problem (``INDEX_SCHEMA``); the tables stay in
Ray's object store for the planner (``pipeline.extract.plan``).
"""

from __future__ import annotations

import hashlib
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from pipeline.data import layout
from pipeline.data.cls_reader import ClsIndex, folder_entries, tar_entries
from pipeline.io import storage
from schemas.records import Problem

INDEX_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),  # <wnid>/<name>
        ("wnid", pa.string()),
        ("name", pa.string()),
        ("image_url", pa.string()),  # the file, or the tar holding it
        ("offset", pa.int64()),  # tar members: where the bytes start; -1 for files
        ("size", pa.int64()),
        ("problem", pa.string()),  # "" for an image; "<kind>: <message>" for a refused input
    ]
)
SOURCES_PER_TASK = 16  # synsets per index task: ~20K images of ImageNet's
IO_THREADS = 16  # sources read at once by one index task


@dataclass(frozen=True)
class Source:
    """One synset's folder or tar."""

    wnid: str
    url: str
    kind: str  # "folder" | "tar"
    size: int = 0
    version: str = ""  # ETag (object storage) or mtime (local disk) of a tar

    @property
    def key(self) -> str:
        text = f"{self.url}\n{self.size}\n{self.version}"
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    @property
    def part_name(self) -> str:
        return f"{self.wnid}-{self.key}.parquet"


def list_sources(root: str) -> tuple[list[Source], list[Problem]]:
    """Every synset folder and tar under ``root`` (two listings), sorted by synset, folders
    first; and the stray files found there."""
    sources, problems = [], []
    folders, tars = storage.join(root, layout.CLS_TRAIN), storage.join(root, layout.CLS_TARS)
    for entry in storage.ls(folders):
        url = storage.to_url(folders, entry["name"])
        if entry["type"] == "directory":
            sources.append(Source(posixpath.basename(entry["name"]), url, "folder"))
        else:
            problems.append(Problem(url, "unexpected-file", "not <wnid>/<image>"))
    for entry in storage.ls(tars):
        url = storage.to_url(tars, entry["name"])
        if entry["type"] == "file" and url.endswith(".tar"):
            version = str(entry.get("ETag") or entry.get("mtime") or "")
            wnid = storage.stem(url)
            sources.append(Source(wnid, url, "tar", int(entry["size"]), version))
        else:
            problems.append(Problem(url, "unexpected-file", "not <wnid>.tar"))
    sources.sort(key=lambda s: (s.wnid, s.kind != "folder"))
    if not sources:
        problems.append(Problem(storage.join(root, "CLS"), "empty-split", "no cls images"))
    return sources, problems


def problem_row(p: Problem) -> dict:
    """An index row for a refused input: its id is the file's stem."""
    stem = storage.stem(p.url)  # a tar member's too: "<tar url>:<member>"
    return {
        "image_id": stem,
        "wnid": "",
        "name": stem,
        "image_url": p.url,
        "offset": -1,
        "size": -1,
        "problem": f"{p.kind}: {p.message}",
    }


def _rows(index: ClsIndex) -> list[dict]:
    images = [
        {
            "image_id": f"{i.wnid}/{i.name}",
            "wnid": i.wnid,
            "name": i.name,
            "image_url": i.url,
            "offset": i.offset,
            "size": i.size,
            "problem": "",
        }
        for i in index.images
    ]
    return images + [problem_row(p) for p in index.problems]


def _tar_table(source: Source, index_dir: str, cached: bool) -> tuple[pa.Table, int]:
    """A tar's index: the cached one, or a new scan (cached for the next run); bytes read."""
    part = storage.join(index_dir, source.part_name)
    if cached:
        return storage.read_table(part), 0
    index, bytes_read = tar_entries(source.url, source.wnid, source.size)
    table = pa.Table.from_pylist(_rows(index), schema=INDEX_SCHEMA)
    storage.write_table(part, table)
    return table, bytes_read


def _source_table(source: Source, index_dir: str, cached: set[str]) -> tuple[pa.Table, int, int]:
    """One source's rows; the tar bytes read and whether a tar was scanned."""
    if source.kind == "folder":
        index = folder_entries(source.url, source.wnid)
        return pa.Table.from_pylist(_rows(index), schema=INDEX_SCHEMA), 0, 0
    is_cached = source.part_name in cached
    table, bytes_read = _tar_table(source, index_dir, is_cached)
    return table, bytes_read, int(not is_cached)


def index_sources(sources: list[Source], index_dir: str, cached: set[str]) -> tuple:
    """One index task: the sources' rows as one table; its row count and the tar bytes read
    (returned apart, so that the driver fetches numbers and leaves the table where it is).
    Sources are read by threads: a header scan on object storage waits on one 512-byte GET
    after another, so one core keeps many of them in flight."""
    with ThreadPoolExecutor(IO_THREADS) as pool:
        done = list(pool.map(lambda s: _source_table(s, index_dir, cached), sources))
    tables = [t for t, _, _ in done]
    table = pa.concat_tables(tables) if tables else INDEX_SCHEMA.empty_table()
    return table, {
        "rows": table.num_rows,
        "tars_scanned": sum(n for _, _, n in done),
        "tar_bytes_read": sum(b for _, b, _ in done),
    }


def groups(sources: list[Source], per_task: int = SOURCES_PER_TASK) -> list[list[Source]]:
    """Consecutive sources, whole synsets together (a synset's folder and tar are deduplicated
    against each other later, so they must meet in one table)."""
    out: list[list[Source]] = []
    for source in sources:
        if out and (len(out[-1]) < per_task or out[-1][-1].wnid == source.wnid):
            out[-1].append(source)
        else:
            out.append([source])
    return out


def index_cls(root: str, index_dir: str) -> tuple[list, list[dict], list[Problem]]:
    """Index every synset under ``root`` with Ray tasks: the index tables' object refs (in
    synset order), each task's counts, and the top-level problems. Each task is told which of
    its own tars are cached (not the whole folder's list: 21,841 names per task on the full
    release). Cached tar indexes of tars that changed since are deleted."""
    import ray

    sources, problems = list_sources(root)
    cached = {posixpath.basename(e["name"]) for e in storage.ls(index_dir)}
    task = ray.remote(num_returns=2, num_cpus=1)(index_sources)
    pending = [
        task.remote(g, index_dir, {s.part_name for s in g} & cached) for g in groups(sources)
    ]
    refs = [table for table, _ in pending]
    counts = ray.get([count for _, count in pending])
    _drop_stale(index_dir, cached, {s.part_name for s in sources if s.kind == "tar"})
    return refs, counts, problems


def _drop_stale(index_dir: str, cached: set[str], current: set[str]) -> None:
    fs, base = storage.get_fs(index_dir)
    stale = [f"{base}/{n}" for n in cached - current if n.endswith(".parquet")]
    if stale:
        fs.rm(stale)
