"""``lsda extract``: fan extraction shards out over Ray Data and account for every image.

Layout under ``WORK/extract/<split>/``: ``params.json`` (the settings this directory was made
with), ``proposals/``, ``windows/`` or ``cls/`` and ``manifest/`` Parquet parts named
``part-NNNNN.parquet`` (plus ``part-NNNNN-retryA.parquet`` for images that could not be read
the first time), ``_done/part-NNNNN.json`` markers, and at the end ``manifest.parquet`` (every
input image: done or quarantined with the reason), ``summary.json`` and ``_SUCCESS``.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from collections import Counter

import pyarrow as pa

from pipeline.data.categories import read_categories
from pipeline.data.category_sets import set_b
from pipeline.data.cls_reader import read_cls_images
from pipeline.data.det_reader import read_det_split
from pipeline.extract import shard
from pipeline.io import storage
from pipeline.io.ray_env import ensure_ray, remote_args
from pipeline.workdir import WorkDir, labelled_split
from schemas.arrow import MANIFEST_SCHEMA
from schemas.config import CategorySplit, ExtractConfig, to_dict
from schemas.records import Problem

# 2: training splits are sharded in a seeded cross-class order (``mixed_order``), not by name.
# 3: training windows are labelled with set B's boxes only (the oracle's: ``<split>-oracle``);
#    proposal shards no longer carry the ground truth.
EXTRACT_VERSION = 3
TRAINING_SPLITS = ("det-train", "val1")


class StaleWorkDir(RuntimeError):
    """The work dir holds an extraction made with other settings or other inputs."""


def only_boxes_of(items: list[dict], wnids: list[str]) -> list[dict]:
    """``items`` with the boxes of other categories removed: the paper's set A has no boxes, so
    its objects are whatever set B's boxes make them (background unless they overlap one)."""
    keep = set(wnids)
    return [{**it, "boxes": [b for b in it["boxes"] if b[0] in keep]} for it in items]


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
        known = {c.wnid for c in read_categories(data)}
        result = read_det_split(data, split, known)
        items = [
            {
                "image_id": a.image_id,
                "image_url": a.image_url,
                "width": a.width,
                "height": a.height,
                "boxes": [[b.wnid, b.xmin, b.ymin, b.xmax, b.ymax] for b in a.boxes],
            }
            for a in result.annotations
        ]
        problems = result.problems
    return sorted(items, key=lambda it: it["image_id"]), problems


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


def mixed_order(items: list[dict], seed: int) -> list[dict]:
    """``items`` in a seeded order that ignores the folders: sorted by a hash of (seed, image id).

    ImageNet's folders are one class each and listings come back sorted, so shards cut from a
    sorted listing hold one class each and training streams see a class at a time (a classifier
    on 800 class-sorted categories stayed at chance). Hashing mixes every shard across the whole
    split, costs one sort in the driver however many images there are, and keeps shard contents
    a pure function of the inputs, so that a re-run resumes the same shards. Training then
    shuffles the shard order every epoch (``pipeline.train.stream``).
    """

    def key(it: dict) -> str:
        return hashlib.sha1(f"{seed}:{it['image_id']}".encode()).hexdigest()

    return sorted(items, key=key)


def _params(
    split: str, cfg: ExtractConfig, windows: bool, items: list[dict], boxes_of: list[str] | str
) -> dict:
    digest = hashlib.sha1("\n".join(it["image_id"] for it in items).encode()).hexdigest()
    return {
        "version": EXTRACT_VERSION,
        "split": split,
        "windows": windows,
        "boxes_of": boxes_of,  # the categories whose boxes label the windows, or "all"
        "config": to_dict(cfg),
        "images": len(items),
        "images_sha1": digest,
    }


def extraction_params(work: str, split: str, oracle: bool = False) -> dict | None:
    """``params.json`` of ``split``'s extraction, or None if it was not extracted."""
    url = storage.join(WorkDir(work).extract(split, oracle), "params.json")
    return json.loads(storage.read_text(url)) if storage.exists(url) else None


def extracted_with(work: str, split: str) -> ExtractConfig | None:
    """The settings ``split`` was extracted with in ``work`` (None if it was not)."""
    params = extraction_params(work, split)
    if params is None:
        return None
    values = params["config"]
    return ExtractConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _check_params(sdir: str, params: dict, overwrite: bool) -> None:
    """Refuse to mix results of other settings or inputs into ``sdir``; record ``params``."""
    url = storage.join(sdir, "params.json")
    if storage.exists(url) and not overwrite:
        old = json.loads(storage.read_text(url))
        if old != json.loads(json.dumps(params)):
            changed = sorted(k for k in params if old.get(k) != json.loads(json.dumps(params[k])))
            raise StaleWorkDir(
                f"{sdir} was extracted with other settings or inputs ({', '.join(changed)} "
                "differ); use another --work directory or --overwrite"
            )
        return
    if overwrite:
        fs, path = storage.get_fs(sdir)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    storage.write_text(url, json.dumps(params, indent=1))


def _run_shard(
    batch: dict, split: str, sdir: str, cfg: ExtractConfig, windows: bool, params: dict
) -> dict:
    rows: list[dict] = []
    for index, attempt, items in zip(batch["shard"], batch["attempt"], batch["items"], strict=True):
        items = json.loads(items)
        rows += shard.process_shard(
            int(index), items, split, sdir, cfg, windows, params, int(attempt)
        )
    return {name: [r[name] for r in rows] for name in MANIFEST_SCHEMA.names}


def _read_markers(sdir: str) -> dict[int, dict]:
    """The finished shards' markers (one listing, concurrent reads)."""
    got = storage.read_many(storage.find(storage.join(sdir, "_done"), (".json",)))
    return {m["shard"]: m for m in (json.loads(v) for v in got.values())}


def _work_units(shards: dict[int, list[dict]], markers: dict[int, dict]) -> list[dict]:
    """Shards without a marker, whole; finished shards with unreadable images, those images."""
    units = [
        {"shard": s, "attempt": 0, "items": it} for s, it in shards.items() if s not in markers
    ]
    for s, m in sorted(markers.items()):
        if m.get("retry"):
            again = set(m["retry"])
            items = [it for it in shards[s] if it["image_id"] in again]
            units.append({"shard": s, "attempt": m.get("attempt", 0) + 1, "items": items})
    return units


def _fan_out(units: list[dict], split, sdir, cfg, windows, params, workers) -> int:
    import ray.data

    ds = ray.data.from_items(
        [{**u, "items": json.dumps(u["items"])} for u in units],
        override_num_blocks=len(units),
    )
    ds = ds.map_batches(
        _run_shard,
        batch_size=1,
        compute=ray.data.TaskPoolStrategy(size=min(workers, len(units)) if workers else None),
        fn_kwargs={"split": split, "sdir": sdir, "cfg": cfg, "windows": windows, "params": params},
        num_cpus=1,
        **remote_args(),
    )
    return sum(1 for _ in ds.iter_rows())


def _problem_rows(split: str, problems: list[Problem]) -> list[dict]:
    return [
        {
            "image_id": storage.stem(p.url),
            "image_url": p.url,
            "split": split,
            "shard": -1,
            "status": "quarantined",
            "reason": f"{p.kind}: {p.message}",
            "note": "",
            "proposals": 0,
            "windows": 0,
            "node": "",
            "seconds": 0.0,
        }
        for p in problems
    ]


def run_extract(
    data: str,
    work: str,
    split: str,
    cfg: ExtractConfig,
    windows: bool | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    oracle: bool = False,
    sets: CategorySplit = CategorySplit(),
) -> dict:
    """Extract one split; returns the summary (also written to ``summary.json``). Windows are
    labelled with set B's boxes (``sets``), or with every box under ``<split>-oracle``."""
    t0 = time.time()
    windows = split in TRAINING_SPLITS if windows is None else windows
    if oracle and not windows:
        raise ValueError("oracle labels training windows: extract it with windows")
    items, problems = load_inputs(data, split)
    boxes_of: list[str] | str = "all"
    if windows and not oracle:  # set A's boxes stop here: no later stage can read them
        boxes_of = set_b(data, sets)
        items = only_boxes_of(items, boxes_of)
    if split == "det-train":
        items = cap_per_class(items, cfg.train_images_per_class)
    if (windows or split == "cls") and cfg.shard_order == "mixed":
        items = mixed_order(items, cfg.seed)
    sdir = WorkDir(work).extract(split, oracle)
    params = _params(split, cfg, windows, items, boxes_of)
    _check_params(sdir, params, overwrite)
    shards = {
        i // cfg.shard_size: items[i : i + cfg.shard_size]
        for i in range(0, len(items), cfg.shard_size)
    }
    units = _work_units(shards, _read_markers(sdir))
    processed = 0
    if units:
        ensure_ray()
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = progress
        processed = _fan_out(units, split, sdir, cfg, windows, params, workers)
    summary = _finish(sdir, split, shards, problems, len(items))
    summary["split"] = labelled_split(split, oracle)
    summary.update(
        resumed_shards=len(shards) - sum(1 for u in units if not u["attempt"]),
        retried_images=sum(len(u["items"]) for u in units if u["attempt"]),
        processed_images=processed,
        seconds=round(time.time() - t0, 2),
        images_per_second=round(processed / max(time.time() - t0, 1e-9), 2),
    )
    storage.write_text(storage.join(sdir, "summary.json"), json.dumps(summary, indent=1))
    storage.write_text(storage.join(sdir, "_SUCCESS"), "")
    return summary


def _finish(sdir: str, split: str, shards: dict, problems: list[Problem], n_items: int) -> dict:
    """One manifest for the split; checks that every input image is accounted for once."""
    tables = [storage.read_table(shard.part_url(sdir, "manifest", s)) for s in shards]
    tables.append(pa.Table.from_pylist(_problem_rows(split, problems), schema=MANIFEST_SCHEMA))
    manifest = pa.concat_tables(
        [t.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA) for t in tables]
    )
    ids = manifest.column("image_id").to_pylist()
    if manifest.num_rows != n_items + len(problems) or len(set(ids)) < n_items:
        raise RuntimeError(
            f"{sdir}: manifest has {manifest.num_rows} rows for "
            f"{n_items} images + {len(problems)} problems"
        )
    storage.write_table(storage.join(sdir, "manifest.parquet"), manifest)
    status = Counter(manifest.column("status").to_pylist())
    per_class: Counter = Counter()
    for marker in _read_markers(sdir).values():
        per_class.update(marker.get("windows_per_class", {}))
    done = manifest.filter(pa.compute.equal(manifest.column("status"), "done"))
    props = done.column("proposals").to_pylist()
    reasons = Counter(r.split(":")[0] for r in manifest.column("reason").to_pylist() if r)
    return {
        "split": split,
        "images": manifest.num_rows,
        "done": status.get("done", 0),
        "quarantined": status.get("quarantined", 0),
        "quarantine_reasons": dict(reasons),
        "proposals_per_image": round(sum(props) / max(len(props), 1), 1),
        "windows": sum(per_class.values()),
        "windows_per_class": dict(sorted(per_class.items())),
        "shards": len(shards),
    }


def format_summary(s: dict) -> str:
    per_class = dict(s["windows_per_class"])
    bg = per_class.pop("__background__", 0)
    reasons = f" {s['quarantine_reasons']}" if s["quarantine_reasons"] else ""
    retried = f", {s['retried_images']} images retried" if s.get("retried_images") else ""
    return (
        f"extract {s['split']}: {s['done']} images done, {s['quarantined']} quarantined{reasons}, "
        f"{s['proposals_per_image']} proposals/image, {s['windows']} windows ({bg} background, "
        f"{len(per_class)} classes), {s['shards']} shards ({s['resumed_shards']} already done"
        f"{retried}), "
        f"{s['seconds']} s, {s['images_per_second']} images/s"
    )
