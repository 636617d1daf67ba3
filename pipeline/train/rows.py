"""Reading shard rows in Ray Data's read tasks. Kept free of torch: a read task's process
imports this module (and the readers' ``keep``/``decode`` functions, ``data.py``), not the
training stack, so it starts ~1.4 s of CPU sooner and holds ~470 MB less resident memory
(``tests/pipeline/train/test_rows.py`` keeps it so)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.io import storage


@dataclass(frozen=True)
class RowReader:
    """How a stream reads shard rows: ``keep(metadata columns, **kwargs)`` -> row indices,
    ``decode(kept rows, **kwargs)`` -> {"image": uint8 (N, H, W, 3), "label": int64 (N,)}."""

    columns: tuple[str, ...]
    keep: Callable[..., list[int]]
    decode: Callable[..., dict]


READ_ROWS = 512  # rows decoded per output block: bounds memory for 227 px windows
MAX_READ_TASKS = 8  # per pass and worker: 32 cost 0.85 s a pass where 8 cost 0.4 s (4.5K rows)
READ_TASK_CPUS = "lsda.read_task_cpus"  # DataContext key: a read task's CPUs (resources.py)


def read_rows(batch: dict, reader: RowReader, kwargs: dict):
    """One read task: its shards, in order, in blocks of up to ``READ_ROWS`` rows. The
    metadata columns choose the rows first; only those rows' pixels become Python objects
    and get decoded (a foreground stream keeps ~15% of the windows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(reader.columns)
    meta = [c for c in columns if c != "pixels"]
    for url in batch["url"]:
        fs, path = storage.get_fs(str(url))
        with fs.open(path, "rb") as f:
            for rb in pq.ParquetFile(f).iter_batches(batch_size=READ_ROWS, columns=columns):
                keep = reader.keep(rb.select(meta).to_pydict(), **kwargs)
                if keep:
                    rows = rb.take(pa.array(keep, pa.int64())).to_pydict()
                    yield reader.decode(rows, **kwargs)
