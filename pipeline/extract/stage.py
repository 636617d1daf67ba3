"""``lsda extract``: plan a split's shards, fan them out over Ray Data, account for every image.

The driver never reads the dataset's bytes nor holds a row per image: classification images
are indexed by Ray tasks (``pipeline.data.cls_index``), the shards are planned by Ray tasks
on Arrow tables (``pipeline.extract.plan``), and each shard task reads its own rows.

Layout under ``WORK/extract/<split>/``: ``params.json`` (the settings and inputs this
directory was made with), ``plan/`` (the shards' rows), ``proposals/``, ``windows/`` or
``cls/`` or ``bags/`` (``mil``) and ``manifest/`` Parquet parts named ``part-NNNNN.parquet`` (plus
``part-NNNNN-retryA.parquet`` for images that could not be read the first time; the readers'
refusals in ``manifest/part-readers.parquet``), ``_done/part-NNNNN.json`` markers, and at the
end ``summary.json`` and ``_SUCCESS``. ``manifest/`` is one Parquet dataset: every input
image, done or quarantined with the reason (``read_manifest``).
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pyarrow as pa

from pipeline.data.category_sets import category_roles, set_b
from pipeline.extract import plan as planner
from pipeline.extract import shard
from pipeline.extract.inputs import split_inputs
from pipeline.failures import DEFAULT_MAX_BAD, StageFailed, check_bad_share, failure_message
from pipeline.io import storage
from pipeline.io.ray_env import ensure_ray, remote_args
from pipeline.workdir import MIL_SPLIT, WorkDir, labelled_split
from schemas.arrow import MANIFEST_SCHEMA
from schemas.config import CategorySplit, ExtractConfig, MilConfig, to_dict
from schemas.records import Problem

# 2: training splits are sharded in a seeded cross-class order (``mixed_order``), not by name.
# 3: training windows are labelled with set B's boxes only (the oracle's: ``<split>-oracle``);
#    proposal shards no longer carry the ground truth.
# 4: shards planned by Ray tasks (``plan/``); the manifest is the ``manifest/`` dataset; the
#    input fingerprint is the plan's.
EXTRACT_VERSION = 4
PROPOSAL_SETTINGS = ("resize_width", "max_proposals", "min_box", "ss_mode")
TRAINING_SPLITS = ("det-train", "val1")


class StaleWorkDir(RuntimeError):
    """The work dir holds an extraction made with other settings or other inputs."""


def _params(
    split: str, cfg: ExtractConfig, windows: bool, plan: planner.Plan, boxes_of: list[str] | str
) -> dict:
    return {
        "version": EXTRACT_VERSION,
        "split": split,
        "windows": windows,
        "boxes_of": boxes_of,  # the categories whose boxes label the windows, or "all"
        "config": to_dict(cfg),
        "images": plan.rows,
        "images_sha1": plan.sha1,
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


def _stale(sdir: str, params: dict) -> str | None:
    """Why ``sdir`` cannot take results made with ``params`` (None: it can); records them."""
    url = storage.join(sdir, "params.json")
    if storage.exists(url):
        old = json.loads(storage.read_text(url))
        if old != json.loads(json.dumps(params)):
            changed = sorted(k for k in params if old.get(k) != json.loads(json.dumps(params[k])))
            return (
                f"{sdir} was extracted with other settings or inputs ({', '.join(changed)} "
                "differ); use another --work directory or --overwrite"
            )
        return None
    storage.write_text(url, json.dumps(params, indent=1))
    return None


def _run_shard(
    batch: dict,
    split: str,
    sdir: str,
    cfg: ExtractConfig,
    windows: bool,
    params: dict,
    proposals_from: str | None,
    data: str,
) -> dict:
    rows: list[dict] = []
    for unit in batch["unit"]:
        unit = json.loads(unit)
        items = planner.read_shard(unit["files"], unit["shard"])
        if unit["only"]:
            only = set(unit["only"])
            items = [it for it in items if it["image_id"] in only]
        if split not in ("cls", MIL_SPLIT):
            items = [{**it, "boxes": json.loads(it["boxes"])} for it in items]
        rows += shard.process_shard(
            unit["shard"],
            items,
            split,
            sdir,
            cfg,
            windows,
            params,
            unit["attempt"],
            proposals_from,
            data,
        )
    return {name: [r[name] for r in rows] for name in MANIFEST_SCHEMA.names}


def read_markers(sdir: str) -> dict[int, dict]:
    """The finished shards' markers (one listing, concurrent reads)."""
    got = storage.read_many(storage.find(storage.join(sdir, "_done"), (".json",)))
    return {m["shard"]: m for m in (json.loads(v) for v in got.values())}


def _work_units(plan: planner.Plan, markers: dict[int, dict]) -> list[dict]:
    """Shards without a marker, whole; finished shards with unreadable images, those images.
    A unit names its shard and the plan files holding its rows, never the rows."""

    def unit(s: int, attempt: int = 0, only: list[str] = ()) -> dict:
        return {"shard": s, "attempt": attempt, "files": plan.files_of(s), "only": list(only)}

    units = [unit(s) for s in range(plan.shards) if s not in markers]
    for s, m in sorted(markers.items()):
        if m.get("retry"):
            units.append(unit(s, m.get("attempt", 0) + 1, m["retry"]))
    return units


def _fan_out(
    units: list[dict], split, sdir, cfg, windows, params, workers, proposals_from, data
) -> int:
    import ray.data

    ds = ray.data.from_items(
        [{"unit": json.dumps(u)} for u in units], override_num_blocks=len(units)
    )
    ds = ds.map_batches(
        _run_shard,
        batch_size=1,
        compute=ray.data.TaskPoolStrategy(size=min(workers, len(units)) if workers else None),
        fn_kwargs={
            "split": split,
            "sdir": sdir,
            "cfg": cfg,
            "windows": windows,
            "params": params,
            "proposals_from": proposals_from,
            "data": data,
        },
        num_cpus=1,
        **remote_args(),
    )
    try:
        return sum(1 for _ in ds.iter_rows())
    except Exception as exc:
        if failed := failure_message(exc, shard.ShardFailed):
            raise StageFailed(failed) from exc
        raise


def _refused_rows(split: str, refused: pa.Table) -> pa.Table:
    """The manifest's rows for inputs the readers refused (or found twice): shard -1."""
    n = refused.num_rows
    return pa.table(
        {
            "image_id": refused.column("image_id"),
            "image_url": refused.column("image_url"),
            "split": [split] * n,
            "shard": pa.array([-1] * n, pa.int32()),
            "status": ["quarantined"] * n,
            "reason": refused.column(planner.PROBLEM),
            "note": [""] * n,
            "proposals": pa.array([0] * n, pa.int32()),
            "windows": pa.array([0] * n, pa.int32()),
            "node": [""] * n,
            "seconds": pa.array([0.0] * n, pa.float32()),
        },
        schema=MANIFEST_SCHEMA,
    )


def _problems_table(problems: list[Problem]) -> pa.Table:
    rows = [
        {"image_id": storage.stem(p.url), "image_url": p.url, "problem": f"{p.kind}: {p.message}"}
        for p in problems
    ]
    return pa.Table.from_pylist(rows, schema=planner.REFUSED_SCHEMA)


def reusable_proposals(work: str, split: str, cfg: ExtractConfig, plan: planner.Plan) -> str | None:
    """The set-B extraction of ``split`` whose proposals the oracle's can reuse: finished,
    with the same proposal settings and the same images in the same shards."""
    params = extraction_params(work, split)
    sdir = WorkDir(work).extract(split)
    if params is None or not storage.exists(storage.join(sdir, "_SUCCESS")):
        return None
    same = all(params["config"][k] == getattr(cfg, k) for k in PROPOSAL_SETTINGS)
    same_shards = params["config"]["shard_size"] == cfg.shard_size
    return sdir if same and same_shards and params["images_sha1"] == plan.sha1 else None


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
    max_bad: float = DEFAULT_MAX_BAD,
    bags: MilConfig = MilConfig(),
) -> dict:
    """Extract one split; returns the summary (also written to ``summary.json``). Windows are
    labelled with set B's boxes (``sets``), or with every box under ``<split>-oracle``; the
    oracle's reuse the proposals of the set-B extraction when it is there. ``mil``: the
    proposals of ``bags.images_per_category`` classification images of every category
    without boxes (set A; with ``bags.leaves`` every leaf category too; none held back), in
    image id order: a category's bags in one or two shards.

    More than ``max_bad`` of the inputs quarantined (or all of them) fails the stage
    (``StageFailed``) without ``_SUCCESS``; the summary is written all the same."""
    t0 = time.time()
    windows = split in TRAINING_SPLITS if windows is None else windows
    if oracle and not windows:
        raise ValueError("oracle labels training windows: extract it with windows")
    sdir = WorkDir(work).extract(split, oracle)
    if overwrite:
        storage.remove_tree(sdir)
    boxes_of = set_b(data, sets) if windows and not oracle else "all"
    sample = _bag_inputs(data, sets, bags) if split == MIL_SPLIT else ([], None, 0)
    ensure_ray()
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = progress
    refs, counts, problems, left_out = split_inputs(data, work, split, cfg, boxes_of, sample)
    if left_out:
        print(f"extract {split}: {len(left_out)} synset folders of categories without boxes "
              "left out (read by the oracle's extraction only)", flush=True)  # fmt: skip
    mixed = (windows or split == "cls") and cfg.shard_order == "mixed"
    plan_root = storage.join(sdir, "plan")
    plan = planner.plan_split(
        refs, counts, "mixed" if mixed else "sorted", cfg.seed, cfg.shard_size, plan_root
    )
    params = _params(split, cfg, windows, plan, boxes_of)
    if split == MIL_SPLIT:
        params["bags"] = {"images_per_category": bags.images_per_category, "leaves": bags.leaves}
    if reason := _stale(sdir, params):
        planner.discard(plan_root, plan)
        raise StaleWorkDir(reason)
    planner.commit(plan_root, plan)
    refused = pa.concat_tables([_problems_table(problems), plan.refused])
    proposals_from = reusable_proposals(work, split, cfg, plan) if oracle else None
    units = _work_units(plan, read_markers(sdir))
    processed = 0
    if units:
        processed = _fan_out(
            units, split, sdir, cfg, windows, params, workers, proposals_from, data
        )
    summary = _finish(sdir, split, plan, refused, params)
    summary["split"] = labelled_split(split, oracle)
    summary.update(
        resumed_shards=plan.shards - sum(1 for u in units if not u["attempt"]),
        retried_images=sum(len(u["only"]) for u in units if u["attempt"]),
        processed_images=processed,
        proposals_reused=proposals_from is not None,
        left_out_folders=left_out,  # DET train folders of set A (inputs.folders_without_boxes)
        seconds=round(time.time() - t0, 2),
        images_per_second=round(processed / max(time.time() - t0, 1e-9), 2),
    )
    storage.write_text(storage.join(sdir, "summary.json"), json.dumps(summary, indent=1))
    done_url = storage.join(sdir, "_SUCCESS")
    try:
        where = f"{storage.join(sdir, 'manifest')}/ (counts by reason in summary.json)"
        check_bad_share(f"extract {summary['split']}", summary["quarantined"],
                        summary["images"], max_bad, where)  # fmt: skip
    except StageFailed:
        storage.remove_tree(done_url)  # an earlier run's, with a smaller share
        raise
    storage.write_text(done_url, "")
    return summary


def _bag_inputs(data: str, sets: CategorySplit, bags: MilConfig) -> tuple:
    """``sample_bags``' arguments: the categories that get no bags (set B has boxes; the held
    back are left out of every stage), those that may (None: every other), images per one."""
    roles = category_roles(data, sets)
    only = None if bags.leaves else [w for w in roles.detection if w not in set(roles.set_b)]
    return roles.set_b + roles.held_back, only, bags.images_per_category


def read_manifest(sdir: str) -> pa.Table:
    """Every input image of an extraction, done or quarantined (the ``manifest/`` dataset)."""
    return storage.read_table(storage.join(sdir, "manifest"))


def _finish(sdir: str, split: str, plan: planner.Plan, refused: pa.Table, params: dict) -> dict:
    """The split's summary, from the shards' markers: every planned image accounted for once.
    The manifest stays one Parquet part per shard (no merge in the driver)."""
    readers = _refused_rows(split, refused)
    url = storage.join(sdir, "manifest", "part-readers.parquet")
    storage.write_table(url, readers.replace_schema_metadata({b"lsda": json.dumps(params)}))
    markers = read_markers(sdir)
    missing = [s for s in range(plan.shards) if s not in markers]
    images = sum(markers[s]["images"] for s in range(plan.shards) if s in markers)
    if missing or images != plan.rows:
        raise RuntimeError(
            f"{sdir}: {images} images in the shards' markers for {plan.rows} planned; "
            f"{len(missing)} shards unfinished"
        )
    per_class: Counter = Counter()
    reasons: Counter = Counter(r.split(":")[0] for r in refused.column(planner.PROBLEM).to_pylist())
    done = proposals = 0
    for m in markers.values():
        per_class.update(m.get("windows_per_class", {}))
        reasons.update(m.get("reasons", {}))
        done += m.get("done", 0)
        proposals += m.get("proposals", 0)
    return {
        "split": split,
        "images": plan.rows + refused.num_rows,
        "done": done,
        "quarantined": plan.rows + refused.num_rows - done,
        "quarantine_reasons": dict(reasons),
        "proposals_per_image": round(proposals / max(done, 1), 1),
        "windows": sum(per_class.values()),
        "windows_per_class": dict(sorted(per_class.items())),
        "shards": plan.shards,
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
