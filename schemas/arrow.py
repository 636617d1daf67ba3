"""Arrow schemas of the Parquet outputs (extraction's shards and manifests)."""

from __future__ import annotations

import pyarrow as pa

# --- extraction outputs (lsda extract); docs/extract.md describes each column ---------------

BACKGROUND = "__background__"

PROPOSAL_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("image_url", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("boxes", pa.list_(pa.float32())),  # [x1, y1, x2, y2] * N, 0-based inclusive
    ]
)

WINDOW_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("label", pa.string()),  # wnid, or BACKGROUND when IoU < fg_iou with every box
        ("iou", pa.float32()),  # best IoU with any ground-truth box
        ("overlap_wnid", pa.string()),  # wnid of that box (null for images without boxes)
        ("source", pa.string()),  # "gt" or "proposal"
        ("box", pa.list_(pa.float32(), 4)),
        ("size", pa.int16()),
        ("encoding", pa.string()),  # raw: size*size*3 uint8 RGB; jpeg: JPEG bytes
        ("pixels", pa.binary()),
    ]
)

CLS_SCHEMA = pa.schema(
    [
        ("wnid", pa.string()),
        ("name", pa.string()),
        ("image_url", pa.string()),
        ("size", pa.int16()),
        ("pixels", pa.binary()),  # size*size*3 uint8 RGB
    ]
)

# The ``mil`` split: a sample of each held-out category's classification images, one bag per
# image (``lsda mil`` warps its windows again, as detection does: stored windows would be
# TBs at ImageNet's size). Files are ``image_url``; tar members ``image_url`` at ``offset``.
BAG_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),  # <wnid>/<name>
        ("wnid", pa.string()),  # the bag's label: the image's category
        ("image_url", pa.string()),  # relative to the dataset's root
        ("offset", pa.int64()),  # tar members: where the bytes start; -1 for files
        ("size", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("boxes", pa.list_(pa.float32())),  # the whole image first, then the proposals
    ]
)

MANIFEST_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("image_url", pa.string()),
        ("split", pa.string()),
        ("shard", pa.int32()),  # -1: refused by the readers before extraction
        ("status", pa.string()),  # done | quarantined
        ("reason", pa.string()),  # why quarantined: "<kind>: <message>"
        ("note", pa.string()),  # e.g. a colour conversion (CMYK->RGB)
        ("proposals", pa.int32()),
        ("windows", pa.int32()),
        ("node", pa.string()),  # Ray node that processed the image
        ("seconds", pa.float32()),
    ]
)
