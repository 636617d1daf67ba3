"""Training inputs streamed by Ray Data from the extraction shards into tensors.

Classification images come from ``WORK/extract/cls/cls/``, windows from
``WORK/extract/<split>/windows/``; ``pipeline.train.stream`` reads them, these functions decode
them. 1 classification image in ``holdout_every`` (by a hash of its name) is held out to
measure accuracy; detection fine-tuning uses every window. Augmentation (random crop, mirror)
happens on the worker, in torch.
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np

from pipeline.io import storage
from pipeline.train.rows import RowReader
from schemas.arrow import BACKGROUND


def read_parquet(urls: list[str], columns: list[str]):
    """A Ray dataset over Parquet files at any fsspec URL."""
    import pyarrow.fs
    import ray.data

    fs, _ = storage.get_fs(urls[0])
    paths = [storage.get_fs(u)[1] for u in urls]
    pa_fs = pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))
    return ray.data.read_parquet(paths, filesystem=pa_fs, columns=columns)


def held_out(key: str, every: int) -> bool:
    return every > 0 and zlib.crc32(key.encode()) % every == 0


def decode_pixels(pixels, sizes, encodings=None) -> np.ndarray:
    out = []
    for i, data in enumerate(pixels):
        s = int(sizes[i])
        if encodings is not None and encodings[i] == "jpeg":
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        else:
            img = np.frombuffer(data, np.uint8).reshape(s, s, 3)
        out.append(img)
    return np.stack(out) if out else np.zeros((0, 1, 1, 3), np.uint8)


def cls_keep(batch: dict, rows: dict[str, int], holdout_every: int, holdout: bool, **_) -> list:
    """Indices of the rows of ``batch`` (metadata columns) that this stream takes."""
    return [
        i
        for i, (w, n) in enumerate(zip(batch["wnid"], batch["name"], strict=True))
        if str(w) in rows and held_out(str(n), holdout_every) == holdout
    ]


def cls_arrays(batch: dict, rows: dict[str, int], **_) -> dict:
    """Every row of ``batch`` (already selected by ``cls_keep``) decoded and labelled."""
    return {
        "image": decode_pixels(batch["pixels"], batch["size"]),
        "label": np.array([rows[str(w)] for w in batch["wnid"]], np.int64),
    }


def window_keep(batch: dict, labels: set[str], **_) -> list[int]:
    return [i for i, lb in enumerate(batch["label"]) if str(lb) in labels]


def window_arrays(batch: dict, rows: dict[str, int], decode: str = "host", **_) -> dict:
    """Decoded windows and their rows; with ``decode="device"`` (JPEG windows only), the
    encoded bytes instead (``jpeg_rows``), for the training worker to decode on its GPU."""
    labels = np.array([rows[str(lb)] for lb in batch["label"]], np.int64)
    if decode == "device":
        jpeg, lengths = jpeg_rows(batch["pixels"], int(batch["size"][0]))
        return {"jpeg": jpeg, "jpeg_len": lengths, "label": labels}
    return {
        "image": decode_pixels(batch["pixels"], batch["size"], batch["encoding"]),
        "label": labels,
    }


def jpeg_rows(encoded, size: int) -> tuple[np.ndarray, np.ndarray]:
    """JPEG windows of ``size`` px as rows of one uint8 array, zero-padded to a width fixed by
    the size (the raw pixels' bytes and a margin), so that rows from any batch concatenate."""
    width = size * size * 3 + 4096
    out = np.zeros((len(encoded), width), np.uint8)
    lengths = np.zeros(len(encoded), np.int64)
    for i, data in enumerate(encoded):
        if len(data) > width:
            raise ValueError(f"a {size} px JPEG window of {len(data)} bytes (more than raw)")
        out[i, : len(data)] = np.frombuffer(data, np.uint8)
        lengths[i] = len(data)
    return out, lengths


CLS_READER = RowReader(("wnid", "name", "size", "pixels"), cls_keep, cls_arrays)
WINDOW_READER = RowReader(("label", "size", "encoding", "pixels"), window_keep, window_arrays)


def worker_batch(global_size: int, world: int, what: str = "batch_size") -> int:
    """Rows per worker for a minibatch of ``global_size`` rows per optimizer step.

    Batch sizes in the configs are the paper's: per optimizer step, across all workers (DDP
    averages the workers' gradients, so N workers x global/N rows make one step of the global
    size). Steps per epoch therefore do not change with the worker count."""
    if global_size % world:
        raise ValueError(
            f"{what} {global_size} (per optimizer step, all workers together) does not split "
            f"evenly over {world} workers"
        )
    return global_size // world


__all__ = ["BACKGROUND", "cls_arrays", "window_arrays"]
