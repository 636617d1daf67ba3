"""``lsda mil``: refine the held-out rows of an adapted detector (``detector-knn-5.pt``) on
their own classification images, by multiple-instance learning (``refine``).

The driver maps categories to the ``mil`` extraction's shards (from its markers) and cuts them
into tasks of ``categories_per_task``. The negatives' pool (``negatives.py``) is built first,
once, by a Ray task per DET train shard; a pool of Ray Data actors (each holding layers 1-7 and
reading the pool from the object store) refines a task's categories one at a time, so an
actor's own memory is one category's bags. Each task writes its rows as a Parquet part and a
marker under ``WORK/mil/<name>/``: a re-run does only the tasks without one. The detector
``detector-<name>.pt`` is the base with those rows replaced (set B's rows and the background
row untouched), written last, with its lineage.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import torch

from pipeline import lineage
from pipeline.adapt.rows import apply_rows, with_bias
from pipeline.extract.stage import extracted_with, extraction_params
from pipeline.io import storage
from pipeline.io.ray_env import cpus_per_consumer, ensure_ray, remote_args
from pipeline.mil.bags import bag_image, bag_rows, shards_of, warped, window_features
from pipeline.mil.negatives import NegativePool, build_pool
from pipeline.mil.refine import refine_row, settings_of
from pipeline.mil.shared_fc7 import fc6_activations, refit_model
from pipeline.model.checkpoints import load_model, save_model
from pipeline.workdir import MIL_SPLIT, WorkDir, mil_name
from schemas.config import MilConfig, to_dict

ROW_SCHEMA = pa.schema(
    [
        ("wnid", pa.string()),
        ("row", pa.list_(pa.float32())),  # the refined output row, bias last
        ("bags", pa.int32()),
        ("windows", pa.int32()),
        ("chosen_images", pa.list_(pa.string())),  # each bag's image id ...
        ("chosen_boxes", pa.list_(pa.list_(pa.float32(), 4))),  # ... and its last positive
        ("skipped", pa.list_(pa.string())),  # bags that could not be read: "<url>: <why>"
        # with [mil] fc7: relu(fc6) of each chosen window (shared_fc7.py); else empty
        ("positives", pa.list_(pa.list_(pa.float32()))),
        ("cpu_seconds", pa.float32()),
    ]
)


def task_part(mdir: str, task: int) -> str:
    return storage.join(mdir, "rows", f"part-{task:05d}.parquet")


def task_marker(mdir: str, task: int) -> str:
    return storage.join(mdir, "_done", f"part-{task:05d}.json")


class MilActor:
    """Holds the base detector's layers 1-7 and the negatives' pool; refines a task's
    categories one at a time and writes their rows."""

    def __init__(
        self,
        model_url: str,
        data: str,
        work: str,
        mdir: str,
        cfg: MilConfig,
        max_pixels: int,
        pool: list,
    ):
        import ray

        torch.set_num_threads(1)
        self.model, self.categories, payload = load_model(model_url)
        self.mean = payload["pixel_mean"]
        self.rows = with_bias(self.model.output)
        self.data, self.work, self.mdir = data, work, mdir
        self.settings, self.max_pixels, self.fc7 = settings_of(cfg), max_pixels, cfg.fc7
        self.negatives = NegativePool(ray.get(pool), cfg.negatives)

    def __call__(self, batch: dict) -> dict:
        done = [self.task(json.loads(t)) for t in batch["task"]]
        return {"categories": done}

    def task(self, task: dict) -> int:
        wnids = task["wnids"]
        rows = bag_rows(self.work, task["shards"], set(wnids))
        out = [self.category(w, [r for r in rows if r["wnid"] == w]) for w in wnids]
        storage.write_table(
            task_part(self.mdir, task["task"]), pa.Table.from_pylist(out, ROW_SCHEMA)
        )
        storage.write_text(
            task_marker(self.mdir, task["task"]), json.dumps({"categories": len(out)})
        )
        return len(out)

    def positives(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> torch.Tensor:
        """relu(fc6) of each bag's chosen window: the fc7 option's positives."""
        windows = [warped(i, b, self.model, self.mean) for i, b in zip(images, boxes, strict=True)]
        return fc6_activations(self.model, np.concatenate(windows), self.mean)

    def category(self, wnid: str, rows: list[dict]) -> dict:
        t0 = time.process_time()
        bags, read, boxes, images, skipped = [], [], [], [], []
        for r in rows:
            try:
                image = bag_image(r, self.data, self.mean, self.max_pixels)
                found = np.asarray(r["boxes"], np.float32).reshape(-1, 4)
                bags.append(window_features(image, found, self.model, self.mean))
                read.append(r)
                boxes.append(found)
                images += [image] if self.fc7 else []  # its chosen window, for the fc7 refit
            except (OSError, ValueError) as exc:  # a bag lost since extraction: the rest refine
                skipped.append(f"{r['image_url']}: {type(exc).__name__}: {exc}")
        j, bg = self.categories.rows([wnid])[0], self.categories.background_row
        row, chosen = self.rows[j], []
        if bags:
            row, chosen = refine_row(self.rows, j, bg, bags, self.negatives, self.settings)
        chosen_boxes = [b[int(i[0])] for b, i in zip(boxes, chosen, strict=True)]
        positives = self.positives(images, chosen_boxes) if self.fc7 and images else []
        return {
            "wnid": wnid,
            "row": row.tolist(),
            "bags": len(bags),
            "windows": sum(len(b) for b in bags),
            "chosen_images": [r["image_id"] for r in read],
            "chosen_boxes": [b.tolist() for b in chosen_boxes],
            "skipped": skipped,
            "positives": [p.tolist() for p in positives],
            "cpu_seconds": time.process_time() - t0,
        }


def plan_tasks(held_out: list[str], shards: dict[str, list[int]], per_task: int) -> list[dict]:
    """Tasks of ``per_task`` categories (in wnid order: their bags share shards), each with
    the shards that hold them. Categories without bags are left out (they keep their row)."""
    wnids = [w for w in sorted(held_out) if w in shards]
    tasks = []
    for i in range(0, len(wnids), per_task):
        group = wnids[i : i + per_task]
        tasks.append(
            {
                "task": len(tasks),
                "wnids": group,
                "shards": sorted({s for w in group for s in shards[w]}),
            }
        )
    return tasks


def _fresh(mdir: str, inputs: dict) -> None:
    """Tasks done with other inputs or settings are discarded; these inputs are recorded."""
    url = storage.join(mdir, "inputs.json")
    if storage.exists(url) and json.loads(storage.read_text(url)) != json.loads(json.dumps(inputs)):
        storage.remove_tree(mdir)
    if not storage.exists(url):
        storage.write_text(url, json.dumps(inputs, indent=1))


def _check_bags(work: str, cfg: MilConfig) -> None:
    """The ``mil`` extraction was made with ``cfg``'s sample: else say how to make it."""
    params = extraction_params(work, MIL_SPLIT)
    if params is None:
        return  # shards_of says what to run
    wanted = {"images_per_category": cfg.images_per_category, "leaves": cfg.leaves}
    if params.get("bags") != wanted:
        raise ValueError(
            f"{WorkDir(work).extract(MIL_SPLIT)} holds the bags of {params.get('bags')}, not "
            f"{wanted}: run `lsda extract --split mil --overwrite` with these settings"
        )


def _fan_out(tasks: list[dict], kwargs: dict, actors: int, name: str) -> None:
    """The tasks through the actor pool; a progress line at every tenth of the categories."""
    import ray.data

    n = max(1, min(actors, len(tasks)))
    ds = ray.data.from_items(
        [{"task": json.dumps(t)} for t in tasks], override_num_blocks=len(tasks)
    )
    ds = ds.map_batches(
        MilActor,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=n),
        fn_constructor_kwargs=kwargs,
        num_cpus=cpus_per_consumer(n),
        **remote_args(),
    )
    total, done, shown = sum(len(t["wnids"]) for t in tasks), 0, 0
    for row in ds.iter_rows():
        done += row["categories"]
        if done * 10 // total > shown or done == total:
            shown = done * 10 // total
            print(f"mil {name}: {done}/{total} categories refined", flush=True)


def _refit_fc7(model, categories, payload: dict, work: str, cfg: MilConfig, parts: list[str]):
    """The fc7 option (``shared_fc7.py``) in one Ray task; ``model`` takes its weights."""
    import ray

    ensure_ray()
    task = ray.remote(refit_model).options(num_cpus=1, **remote_args())
    args = (categories, payload["pixel_mean"], work, cfg, parts, list(payload["trained"]))
    refitted, seen = ray.get(task.remote(model, *args))
    model.load_state_dict(refitted.state_dict())
    print(f"mil: fc7 refitted on {seen['windows']} windows ({seen['positives']} chosen)")
    return seen


def run_mil(
    data: str,
    work: str,
    cfg: MilConfig = MilConfig(),
    base: str = "knn-5",
    name: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Refine ``detector-<base>.pt``'s held-out rows; writes ``detector-<base>-mil.pt``."""
    t0 = time.time()
    wd = WorkDir(work)
    name = name or mil_name(base)
    base_url, out_url = wd.model(base), wd.model(name)
    _check_bags(work, cfg)
    # where and how, not what comes out; and the extraction's own, in its fingerprint
    left_out = ("actors", "categories_per_task", "images_per_category", "leaves")
    settings = {k: v for k, v in to_dict(cfg).items() if k not in left_out}
    if not cfg.fc7:  # detectors refined before the option existed stay current
        settings = {k: v for k, v in settings.items() if not k.startswith("fc7")}
    if cfg.unlabelled_quantile is None:  # the same, for this option
        del settings["unlabelled_quantile"]
    inputs = {
        "detector": lineage.of(base_url),
        "bags": lineage.of_extraction(work, MIL_SPLIT),
        "negatives": lineage.of_extraction(work, "det-train"),
        "settings": settings,
    }
    if not overwrite and lineage.is_current(out_url, inputs, f"mil {name}"):
        return {"model": out_url, "skipped": True}
    mdir = wd.mil(name)
    if overwrite:
        storage.remove_tree(mdir)
    model, categories, payload = load_model(base_url)
    trained = set(payload["trained"])
    shards = shards_of(work)
    held_out = [w for w in categories.wnids if w not in trained]
    # no more categories per task than give every actor one: 24 categories with bags (the
    # others keep their rows), 2 actors: 12 each
    with_bags = sum(1 for w in held_out if w in shards)
    per_task = max(1, min(cfg.categories_per_task, -(-with_bags // max(cfg.actors, 1))))
    tasks = plan_tasks(held_out, shards, per_task)
    _fresh(mdir, {**inputs, "categories_per_task": per_task})  # a task's id: its categories
    done = {t["task"] for t in tasks if storage.exists(task_marker(mdir, t["task"]))}
    pending = [t for t in tasks if t["task"] not in done]
    pool_size, pool_seconds, pool_skipped = 0, 0.0, []
    if pending:
        ensure_ray()
        root = storage.absolute(data)  # where the tasks and actors read images from
        t_pool = time.time()
        pool, pool_size, pool_skipped = build_pool(root, work, base_url, cfg.negatives)
        pool_seconds = time.time() - t_pool
        print(
            f"mil {name}: a pool of {pool_size} background windows of DET train "
            f"({pool_seconds:.0f} s)"
            + (f"; {len(pool_skipped)} unreadable images left out" if pool_skipped else ""),
            flush=True,
        )
        kwargs = {
            "pool": pool,
            "model_url": base_url,
            "data": root,
            "work": work,
            "mdir": mdir,
            "cfg": cfg,
            "max_pixels": extracted_with(work, MIL_SPLIT).max_pixels,
        }
        _fan_out(pending, kwargs, cfg.actors, name)
    parts = [task_part(mdir, t["task"]) for t in tasks]
    columns = [c for c in ROW_SCHEMA.names if c != "positives"]  # the fc7 task reads those
    table = (
        pa.concat_tables([storage.read_table(url, columns) for url in parts])
        if parts
        else ROW_SCHEMA.empty_table().drop_columns(["positives"])
    )
    refined = table.column("wnid").to_pylist()
    if refined:
        values = torch.tensor(table.column("row").to_pylist())
        apply_rows(model.output, categories.rows(refined), values)
    fit = _refit_fc7(model, categories, payload, work, cfg, parts) if cfg.fc7 and refined else {}
    kept = ("input_size", "pixel_mean", "set_b", "trained", "k")
    keep = {key: payload[key] for key in kept if key in payload}
    save_model(out_url, model, payload["model"], categories, kind="detector", name=name,
               base=base, mil=settings, **keep)  # fmt: skip
    cpu = table.column("cpu_seconds").to_pylist()
    skipped = [s for group in table.column("skipped").to_pylist() for s in group]
    missing = sorted(set(held_out) - set(refined))
    summary = {
        "model": out_url,
        "refined": len(refined),
        "without_bags": len(missing),  # their rows stay the base's
        "without_bags_examples": missing[:20],
        "bags": sum(table.column("bags").to_pylist()),
        "windows": sum(table.column("windows").to_pylist()),
        "skipped_bags": len(skipped),
        "skipped_examples": skipped[:20],  # every one: the rows/ parts' ``skipped`` column
        "tasks": len(tasks),
        "resumed_tasks": len(done),
        "cpu_seconds_per_category": round(sum(cpu) / max(len(cpu), 1), 3),
        "negatives_pool": pool_size,  # 0 where every task was done before (resumed)
        "pool_seconds": round(pool_seconds, 2),  # once per run, not per category
        "pool_skipped_images": pool_skipped,  # DET train images that could not be read
        **({"fc7_refit": fit} if fit else {}),
        "seconds": round(time.time() - t0, 2),
    }
    storage.write_text(storage.join(mdir, "summary.json"), json.dumps(summary, indent=1))
    lineage.record(out_url, inputs)
    return summary
