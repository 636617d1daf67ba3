"""A split's shards, planned on Arrow tables by Ray tasks: the driver holds counts and file
names, never a row per image.

The order is today's, exactly: sorted by ``sha1(f"{seed}:{image_id}")`` (``mixed``: every
shard a sample of the whole split, however class-sorted the listing) or by image id
(``sorted``); shard ``s`` is ranks ``[s * shard_size, (s + 1) * shard_size)``. A distributed
sort computes it, as a shuffle does:

1. map (one task per ~``ROWS_PER_MAP`` index rows): drop refused inputs and duplicate image
   ids, compute each row's sort key, cut the rows into ``R`` key ranges (sha1 digests are
   uniform, so equal slices of the digest space hold equal shares);
2. the driver adds up the rows per range: range ``r`` starts at rank ``sum(counts[:r])``;
3. reduce (one task per range): sort the range, number its rows from its start rank, and
   write ``<plan dir>/range-RRRRR.parquet`` in shard order, in row groups that a shard task
   reads alone (``read_shard``).

A shard whose ranks straddle two ranges reads both files. The driver keeps one entry per
range file; work units name a shard and its files.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import uuid
from dataclasses import dataclass
from functools import cached_property

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.io import storage

ROWS_PER_MAP = 200_000  # index rows per map task
ROWS_PER_RANGE = 200_000  # plan rows per range file (reduce task)
ROW_GROUP = 1024  # rows per Parquet row group of a range file: what a shard task reads
KEY, RANK, SHARD, PROBLEM = "_key", "rank", "shard", "problem"
REFUSED_SCHEMA = pa.schema(
    [("image_id", pa.string()), ("image_url", pa.string()), (PROBLEM, pa.string())]
)


@dataclass
class Plan:
    """Where each shard's rows are: range files, each holding ranks ``[start, end)``."""

    plan_id: str
    files: list[tuple[str, int, int]]
    rows: int
    shard_size: int
    sha1: str  # of the image ids in plan order: a fingerprint of the inputs and the order
    refused: pa.Table  # rows the readers refused, or duplicates (with their ``problem``)

    @cached_property
    def _starts(self) -> list[int]:
        return [start for _, start, _ in self.files]

    @property
    def shards(self) -> int:
        return math.ceil(self.rows / self.shard_size)

    def files_of(self, shard: int) -> list[str]:
        first, end = shard * self.shard_size, min((shard + 1) * self.shard_size, self.rows)
        i = max(0, bisect.bisect_right(self._starts, first) - 1)
        out = []
        while i < len(self.files) and self.files[i][1] < end:
            url, start, stop = self.files[i]
            if first < stop and start < stop:  # overlaps, and is not an empty range
                out.append(url)
            i += 1
        return out


def sort_keys(image_ids: list[str], order: str, seed: int) -> tuple[pa.Array, list[int]]:
    """Each id's sort key (bytes that sort as today's order) and its key range's 32-bit prefix."""
    if order == "mixed":
        digests = [hashlib.sha1(f"{seed}:{i}".encode()).digest() for i in image_ids]
        return pa.array(digests, pa.binary(20)), [int.from_bytes(d[:4], "big") for d in digests]
    return pa.array([i.encode() for i in image_ids], pa.binary()), [0] * len(image_ids)


def mixed_order(items: list[dict], seed: int) -> list[dict]:
    """``items`` (dicts with an ``image_id``) in the ``mixed`` order, in memory: what
    ``plan_split`` computes as a distributed sort.

    ImageNet's folders are one class each and listings come back sorted, so shards cut from a
    sorted listing hold one class each and training streams see a class at a time (a classifier
    on 800 class-sorted categories stayed at chance). Hashing mixes every shard across the whole
    split and keeps shard contents a pure function of the inputs, so that a re-run resumes the
    same shards. Training then shuffles the shard order every epoch (``pipeline.train.stream``).
    """
    keys, _ = sort_keys([it["image_id"] for it in items], "mixed", seed)
    order = sorted(range(len(items)), key=lambda i: keys[i].as_py())
    return [items[i] for i in order]


def _duplicates(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The first row of each image id, and the later ones as refused inputs."""
    first: dict[str, str] = {}
    keep, problems = [], []
    ids, urls = table.column("image_id").to_pylist(), table.column("image_url").to_pylist()
    for i, (image_id, url) in enumerate(zip(ids, urls, strict=True)):
        if image_id in first:
            problems.append(i)
        else:
            first[image_id] = url
            keep.append(i)
    dups = table.take(pa.array(problems, pa.int64()))
    reason = [f"duplicate-image: also at {first[i]}" for i in dups.column("image_id").to_pylist()]
    refused = dups.select(["image_id", "image_url"]).append_column(PROBLEM, pa.array(reason))
    return table.take(pa.array(keep, pa.int64())), refused


def map_rows(ranges: int, order: str, seed: int, *tables: pa.Table) -> list:
    """A map task: ``ranges`` tables of keyed rows, the refused rows, the rows per range."""
    table = pa.concat_tables(tables, promote_options="permissive")
    refused = [REFUSED_SCHEMA.empty_table()]
    if PROBLEM in table.column_names:
        bad = pc.not_equal(table.column(PROBLEM), "")
        refused.append(table.filter(bad).select(REFUSED_SCHEMA.names).cast(REFUSED_SCHEMA))
        table = table.filter(pc.invert(bad)).drop_columns([PROBLEM])
    table, dups = _duplicates(table)
    refused.append(dups.cast(REFUSED_SCHEMA))
    keys, prefixes = sort_keys(table.column("image_id").to_pylist(), order, seed)
    table = table.append_column(KEY, keys)
    which = pa.array([(p * ranges) >> 32 for p in prefixes], pa.int32())
    parts = [table.filter(pc.equal(which, r)) for r in range(ranges)]
    return [*parts, pa.concat_tables(refused), [p.num_rows for p in parts]]


def reduce_range(start: int, shard_size: int, url: str, *parts: pa.Table) -> dict:
    """A reduce task: one key range sorted, numbered from ``start``, written in shard order."""
    table = pa.concat_tables(parts)
    table = table.take(pc.sort_indices(table, [(KEY, "ascending")])).drop_columns([KEY])
    ranks = pa.array(range(start, start + table.num_rows), pa.int64())
    table = table.append_column(RANK, ranks)
    table = table.append_column(SHARD, pc.divide(ranks, shard_size).cast(pa.int32()))
    storage.write_table(url, table, row_group_size=ROW_GROUP)
    ids = "\n".join(table.column("image_id").to_pylist())
    return {"url": url, "start": start, "end": start + table.num_rows, "sha1": _sha1(ids)}


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _map_groups(counts: list[int]) -> list[list[int]]:
    """Consecutive table indices with about ROWS_PER_MAP rows per group."""
    out: list[list[int]] = [[]]
    rows = 0
    for i, n in enumerate(counts):
        if out[-1] and rows + n > ROWS_PER_MAP:
            out.append([])
            rows = 0
        out[-1].append(i)
        rows += n
    return out


def plan_split(
    tables: list, counts: list[int], order: str, seed: int, shard_size: int, plan_root: str
) -> Plan:
    """Plan the rows of ``tables`` (object refs to index tables, ``counts`` rows each) into
    shards; range files under ``<plan_root>/<plan id>/``."""
    import ray

    if not tables:  # nothing listed (the readers said why)
        return Plan(
            uuid.uuid4().hex[:12], [], 0, shard_size, _sha1(""), REFUSED_SCHEMA.empty_table()
        )
    total = sum(counts)
    ranges = max(1, math.ceil(total / ROWS_PER_RANGE)) if order == "mixed" else 1
    mapper = ray.remote(num_cpus=1, num_returns=ranges + 2)(map_rows)
    mapped = [
        mapper.remote(ranges, order, seed, *[tables[i] for i in group])
        for group in _map_groups(counts)
    ]
    per_range = [sum(c) for c in zip(*ray.get([m[-1] for m in mapped]), strict=True)]
    refused = pa.concat_tables(ray.get([m[-2] for m in mapped]))
    plan_id = uuid.uuid4().hex[:12]
    reducer = ray.remote(num_cpus=1)(reduce_range)
    starts = [sum(per_range[:r]) for r in range(ranges)]
    infos = ray.get(
        [
            reducer.remote(
                starts[r],
                shard_size,
                storage.join(plan_root, plan_id, f"range-{r:05d}.parquet"),
                *[m[r] for m in mapped],
            )
            for r in range(ranges)
        ]
    )
    files = [(i["url"], i["start"], i["end"]) for i in infos]
    digest = _sha1("\n".join(i["sha1"] for i in infos))
    return Plan(plan_id, files, sum(per_range), shard_size, digest, refused)


def commit(plan_root: str, plan: Plan) -> None:
    """Keep ``plan`` as the split's plan: delete the plans made before it."""
    for e in storage.ls(plan_root):
        if e["type"] == "directory" and e["name"].rstrip("/").rsplit("/", 1)[-1] != plan.plan_id:
            storage.remove_tree(storage.to_url(plan_root, e["name"]))


def discard(plan_root: str, plan: Plan) -> None:
    storage.remove_tree(storage.join(plan_root, plan.plan_id))


def read_shard(files: list[str], shard: int) -> list[dict]:
    """A shard's rows from its range files (only the row groups that hold it), in rank order."""
    tables = [storage.read_table(url, filters=[(SHARD, "=", shard)]) for url in files]
    table = pa.concat_tables(tables)
    table = table.take(pc.sort_indices(table, [(RANK, "ascending")]))
    return table.drop_columns([RANK, SHARD]).to_pylist()
