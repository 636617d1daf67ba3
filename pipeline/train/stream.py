"""Seeded, per-worker training streams over extraction shards, read by Ray Data.

Mixing happens twice. Extraction already cuts the shards in a seeded cross-class order
(``pipeline.extract.plan.mixed_order``), so any shard is a sample of the whole split. Here,
every pass over the data (a classifier epoch, a cycle of the detection windows) permutes the
shard list with ``(seed, pass)``, deals it out to the workers (worker r takes every N-th shard
from r), and each worker streams its shards through a local shuffle buffer seeded with
``(seed, pass, rank)``. The order is random across the whole dataset and new every pass, memory
stays at one buffer per worker whatever the dataset size, and nothing waits on a global
shuffle that could deadlock against the training workers' CPUs.

Because the worker, not a shared split coordinator, decides which shards it reads, the stream
is a pure function of (shards, seed, pass, rank, number of workers): the same seed on the same
worker count gives the same batches. Another worker count deals the shards differently, so it
gives other (equally random) batches.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.train.rows import MAX_READ_TASKS, READ_TASK_CPUS, RowReader, read_rows

if TYPE_CHECKING:
    from pipeline.train.resources import TrainPlan


def pass_seed(seed: int, *key: int) -> int:
    """A 32-bit seed for one (seed, *key), stable across processes and Python versions."""
    return int(np.random.default_rng([seed, *key]).integers(0, 2**31 - 1))


def deal(files: Sequence[str], rank: int, world: int, seed: int | None = None) -> list[str]:
    """Worker ``rank``'s share of ``files``: every ``world``-th one of a seeded permutation
    (``seed`` None: the listing order). With fewer files than workers, files are shared so that
    no worker gets none."""
    n = len(files)
    if n == 0:
        return []
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    return [files[order[i % n]] for i in range(rank, max(n, world), world)]


def shard_dataset(files: list[str], reader: RowReader, kwargs: dict):
    """A Ray dataset of the decoded rows of ``files``, in file order (the worker sets
    ``preserve_order``): a few read tasks, each reading a run of consecutive files."""
    import ray.data

    from pipeline.io.ray_env import remote_args

    ds = ray.data.from_items(
        [{"url": u} for u in files], override_num_blocks=min(len(files), MAX_READ_TASKS)
    )
    cpus = ray.data.DataContext.get_current().get_config(READ_TASK_CPUS, 1.0)
    return ds.map_batches(
        read_rows,
        batch_size=None,  # one task per block: a run of consecutive files
        fn_kwargs={"reader": reader, "kwargs": kwargs},
        num_cpus=cpus,
        **remote_args(),
    )


def configure_worker_data(plan: TrainPlan | None = None, readers: str = "") -> None:
    """Ray Data settings for datasets made inside a training worker: keep the order of the
    files (the stream must not depend on which read task finishes first), no progress bars;
    with a ``plan`` (a Ray Train worker's), read in CPUs reserved for this worker, in the
    placement group called ``readers``."""
    import logging

    import ray.data

    if plan is not None:
        from pipeline.train.resources import read_in_reserved_cpus

        read_in_reserved_cpus(plan, readers)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    # its one-time "Progress bars disabled" warning, from every worker
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


class ShardStream:
    """One worker's view of a training input: which shards, how read, how batched."""

    def __init__(
        self,
        files: list[str],
        reader: RowReader,
        kwargs: dict,
        seed: int,
        rank: int,
        world: int,
    ) -> None:
        self.files, self.reader, self.kwargs = files, reader, kwargs
        self.seed, self.rank, self.world = seed, rank, world

    def one_pass(
        self, batch_size: int, key: tuple[int, ...], shuffle_buffer: int
    ) -> Iterator[dict]:
        """Batches (CPU tensors) of one seeded pass over this worker's share; the last one may
        be short."""
        files = deal(self.files, self.rank, self.world, pass_seed(self.seed, *key))
        ds = shard_dataset(files, self.reader, self.kwargs)
        yield from ds.iter_torch_batches(
            batch_size=batch_size,
            device="cpu",
            local_shuffle_buffer_size=max(shuffle_buffer, batch_size),
            local_shuffle_seed=pass_seed(self.seed, *key, self.rank),
            prefetch_batches=2,
        )

    def endless(self, batch_size: int, key: tuple[int, ...], shuffle_buffer: int, what: str):
        """Batches of exactly ``batch_size`` rows from passes ``(*key, 0)``, ``(*key, 1)``, ...
        back to back. A pass's short last batch is joined to the next pass's, so no row is
        dropped and a share smaller than a batch still makes batches. Raises if a pass is
        empty (a worker with no data would otherwise hang its peers in the next all-reduce)."""
        carry: dict | None = None
        for n in itertools.count():
            rows = 0
            for batch in self.one_pass(batch_size, (*key, n), shuffle_buffer):
                rows += len(batch["label"])
                if len(batch["label"]) == batch_size:
                    yield batch
                    continue
                if carry is not None:  # a short batch: the pass's last
                    batch = {k: torch.cat([carry[k], batch[k]]) for k in batch}
                if len(batch["label"]) >= batch_size:
                    yield {k: v[:batch_size] for k, v in batch.items()}
                    batch = {k: v[batch_size:] for k, v in batch.items()}
                carry = batch if len(batch["label"]) else None
            if rows == 0:
                raise RuntimeError(
                    f"training worker {self.rank} received no {what} rows from "
                    f"{len(self.files)} shards"
                )

    def in_order(self, batch_size: int) -> Iterator[dict]:
        """This worker's fixed share, unshuffled, last batch kept: for evaluation."""
        files = self.files[self.rank :: self.world]  # not dealt: a shared file counts twice
        if files:
            ds = shard_dataset(files, self.reader, self.kwargs)
            yield from ds.iter_torch_batches(batch_size=batch_size, device="cpu")


def split_minibatches(
    batches: Iterator[dict], is_bg_row: int, n_fg: int, n_bg: int, cap: int
) -> Iterator[tuple[dict, dict]]:
    """(foreground, background) minibatches of ``n_fg`` and ``n_bg`` rows drawn from one
    shuffled stream of both. One stream, not two: a worker alternating between two Ray Data
    iterators can leave the free CPUs to the paused read tasks of the one it is not reading
    while it waits on the other. Rows arrive shuffled, so keeping at most ``cap`` rows per
    side and dropping the oldest surplus (background, usually, which is ~80% of the windows)
    subsamples uniformly."""
    pools = {False: RowPool(), True: RowPool()}
    need = {False: n_fg, True: n_bg}
    for batch in batches:
        bg = batch["label"] == is_bg_row
        for side, rows in ((False, ~bg), (True, bg)):
            pools[side].add({k: v[rows] for k, v in batch.items()})
            pools[side].keep_newest(cap)
        while all(pools[s].rows >= need[s] for s in (False, True)):
            yield pools[False].take(n_fg), pools[True].take(n_bg)


class RowPool:
    """Batches' rows, oldest first. Copies only the rows it hands out: a step of 227 px windows
    must not re-concatenate a buffer of thousands."""

    def __init__(self) -> None:
        self.chunks: collections.deque[dict] = collections.deque()
        self.rows = 0

    def add(self, chunk: dict) -> None:
        if len(chunk["label"]):
            self.chunks.append(chunk)
            self.rows += len(chunk["label"])

    def take(self, n: int) -> dict:
        """The oldest ``n`` rows (all there are, if fewer) as one batch."""
        parts = self._pop(n)
        return (
            parts[0] if len(parts) == 1 else {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        )

    def keep_newest(self, cap: int) -> None:
        self._pop(max(self.rows - cap, 0))

    def _pop(self, n: int) -> list[dict]:
        parts = []
        while n > 0 and self.chunks:
            head = self.chunks[0]
            m = len(head["label"])
            if m <= n:
                parts.append(self.chunks.popleft())
            else:
                parts.append({k: v[:n] for k, v in head.items()})
                self.chunks[0] = {k: v[n:] for k, v in head.items()}
            self.rows -= min(m, n)
            n -= min(m, n)
        return parts
