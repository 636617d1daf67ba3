"""``lsda toyworld``: write the built-in dataset in the ImageNet release layouts (DESIGN §3).

Work is cut into tasks (a category's classification images, a chunk of scenes); each task
draws from its own seeded generator, so the output is the same whatever the number of
workers. Workers render and encode; the parent process writes, so any fsspec URL works.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import tarfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.data import layout
from pipeline.data.annotations import annotation_xml
from pipeline.data.categories import write_map_det
from pipeline.io import storage
from pipeline.toyworld.scenes import classification_image, detection_scene
from pipeline.toyworld.vocabulary import (
    ToyCategory,
    build_vocabulary,
    detection_categories,
    hierarchy,
)
from schemas.config import ToyWorldConfig, to_dict
from schemas.records import Box

SCENES_PER_TASK = 16
CLS_BOXES = "toyworld_cls_boxes"  # the latent positives of the classification images
Files = list[tuple[str, bytes]]


def encode_jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".JPEG", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


@dataclass(frozen=True)
class World:
    """Everything a task needs, derived from the config alone (cheap to rebuild in workers)."""

    config: ToyWorldConfig
    vocab: list[ToyCategory]

    @classmethod
    def build(cls, config: ToyWorldConfig) -> World:
        return cls(
            config, build_vocabulary(config.seed, config.det_categories, config.leaf_categories)
        )

    def det_split(self) -> tuple[list[int], list[int]]:
        """Indices (into vocab) of set B (first half by name, with boxes) and set A."""
        by_name = sorted(
            (i for i, c in enumerate(self.vocab) if c.detection), key=lambda i: self.vocab[i].name
        )
        half = len(by_name) // 2
        return by_name[:half], by_name[half:]

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, *key])


def _in_tar(world: World, cat: ToyCategory) -> bool:
    fmt = world.config.cls_format
    return fmt == "tars" or (fmt == "mixed" and not cat.detection)


def class_count(world: World, index: int) -> int:
    """Classification images of category ``index``: seeded, within the configured spread."""
    c = world.config
    n = c.cls_images if world.vocab[index].detection else c.leaf_cls_images
    if c.class_count_spread == 0:
        return n
    low = max(1, round(n * (1 - c.class_count_spread)))
    return int(world.rng(5, index).integers(low, n + 1))


def cls_task(world: World, index: int) -> Files:
    cat = world.vocab[index]
    c = world.config
    n = class_count(world, index)
    images, boxes = [], {}
    for j in range(n):
        rng = world.rng(1, index, j)
        rgb, box = classification_image(cat.look, rng, c.cls_size_min, c.cls_size_max)
        images.append((f"{cat.wnid}_{j + 1}.JPEG", encode_jpeg(rgb)))
        boxes[images[-1][0]] = box
    recorded = [(cls_boxes_file(cat.wnid), json.dumps(boxes).encode())]
    if not _in_tar(world, cat):
        return [(f"{layout.CLS_TRAIN}/{cat.wnid}/{name}", data) for name, data in images] + recorded
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in images:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return [(f"{layout.CLS_TARS}/{cat.wnid}.tar", buf.getvalue()), *recorded]


def cls_boxes_file(wnid: str) -> str:
    """Where the generator records the object's box in each classification image of ``wnid``
    (``{name: [xmin, ymin, xmax, ymax]}``): outside the release layouts, so no reader sees it."""
    return f"{CLS_BOXES}/{wnid}.json"


def read_cls_boxes(root: str, wnid: str) -> dict[str, list[int]]:
    """The recorded object boxes of ``wnid``'s classification images, by file name."""
    return json.loads(storage.read_text(storage.join(root, cls_boxes_file(wnid))))


def scene_task(world: World, split: str, start: int, stop: int) -> Files:
    """Scenes [start, stop) of det-train (set B objects only, unless the world's
    ``det_train_every_category``) or val (every category)."""
    b_set, a_set = world.det_split()
    only_b = split == "det-train" and not world.config.det_train_every_category
    pool = b_set if only_b else sorted(b_set + a_set)
    looks = [c.look for c in world.vocab]
    det = sorted(b_set + a_set)
    files: Files = []
    for i in range(start, stop):
        for attempt in range(20):  # the primary object must stay visible; bounded retries
            rng = world.rng(2 if split == "det-train" else 3, i, attempt)
            primary = pool[i % len(pool)]
            others = [int(x) for x in rng.choice(pool, size=int(rng.integers(0, 4)))]
            w = int(world.config.scene_size * rng.uniform(0.9, 1.15))
            h = int(world.config.scene_size * rng.uniform(0.8, 1.0))
            image, objects = detection_scene(looks, [primary, *others], det, rng, w, h)
            if any(o.category == primary for o in objects):
                break
        boxes = [Box(world.vocab[o.category].wnid, o.xmin, o.ymin, o.xmax, o.ymax) for o in objects]
        files += _scene_files(world, split, i, primary, image, boxes)
    return files


def _scene_files(world: World, split: str, i: int, primary: int, image, boxes) -> Files:
    h, w = image.shape[:2]
    if split == "det-train":
        wnid = world.vocab[primary].wnid
        name, img_dir, box_dir = f"{wnid}_{i + 1}", layout.DET_TRAIN_IMAGES, layout.DET_TRAIN_BOXES
        img_rel, box_rel = f"{img_dir}/{wnid}/{name}.JPEG", f"{box_dir}/{wnid}/{name}.xml"
        folder = wnid
    else:
        name = f"ILSVRC2013_val_{i + 1:08d}"
        img_rel = f"{layout.DET_VAL_IMAGES}/{name}.JPEG"
        box_rel = f"{layout.DET_VAL_BOXES}/{name}.xml"
        folder = "ILSVRC2013_val"
    xml = annotation_xml(name, folder, w, h, boxes)
    return [(img_rel, encode_jpeg(image)), (box_rel, xml.encode())]


def _text_files(world: World) -> Files:
    """words.txt, wordnet.is_a.txt, split files and a description of the world."""
    hier = hierarchy(world.vocab)
    words = "".join(f"{w}\t{n}\n" for w, n in hier.names.items())
    is_a = "".join(f"{p} {c}\n" for p, kids in hier.children.items() for c in kids)
    c = world.config
    order = world.rng(4).permutation(c.val1_scenes + c.val2_scenes)
    val1, val2 = sorted(order[: c.val1_scenes]), sorted(order[c.val1_scenes :])
    # val1 in R-CNN's two-column form, val2 with names only: the readers take both.
    val1_txt = "".join(f"ILSVRC2013_val_{i + 1:08d} {k + 1}\n" for k, i in enumerate(val1))
    val2_txt = "".join(f"ILSVRC2013_val_{i + 1:08d}\n" for i in val2)
    b_set, a_set = world.det_split()
    meta = {
        "generator": "lsda toyworld",
        "config": to_dict(c),
        "set_b": [world.vocab[i].wnid for i in b_set],
        "set_a": [world.vocab[i].wnid for i in a_set],
        "leaf_vocabulary": [v.wnid for v in world.vocab if not v.detection],
    }
    return [
        (layout.WORDS, words.encode()),
        (layout.IS_A, is_a.encode()),
        (layout.split_file("val1"), val1_txt.encode()),
        (layout.split_file("val2"), val2_txt.encode()),
        ("toyworld.json", json.dumps(meta, indent=1).encode()),
    ]


def _tasks(world: World) -> list[tuple[Callable[..., Files], tuple]]:
    c = world.config
    tasks: list[tuple[Callable[..., Files], tuple]] = [
        (cls_task, (i,)) for i in range(len(world.vocab))
    ]
    for split, n in (("det-train", c.det_train_scenes), ("val", c.val1_scenes + c.val2_scenes)):
        for start in range(0, n, SCENES_PER_TASK):
            tasks.append((scene_task, (split, start, min(n, start + SCENES_PER_TASK))))
    return tasks


_WORLD: World | None = None


def _init_worker(config: ToyWorldConfig) -> None:
    global _WORLD
    cv2.setNumThreads(1)
    _WORLD = World.build(config)


def _run_task(fn: Callable[..., Files], args: tuple) -> Files:
    assert _WORLD is not None
    return fn(_WORLD, *args)


def _results(config: ToyWorldConfig, tasks, workers: int) -> Iterator[Files]:
    if workers <= 1:
        _init_worker(config)
        yield from (_run_task(fn, args) for fn, args in tasks)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, ctx, _init_worker, (config,)) as pool:
        futures = [pool.submit(_run_task, fn, args) for fn, args in tasks]
        for f in futures:
            yield f.result()


def generate(out: str, config: ToyWorldConfig, workers: int = 1, progress: bool = True) -> dict:
    """Write the dataset under ``out``; return a summary of what was written."""
    t0 = time.time()
    world = World.build(config)
    write_map_det(out, detection_categories(world.vocab))
    tasks = _tasks(world)
    n_files = n_bytes = 0
    with ThreadPoolExecutor(8) as writers:  # object stores like many writes in flight
        pending = []
        bar = tqdm(total=len(tasks), desc="toyworld", unit="task", disable=not progress)
        for files in _results(config, tasks, workers):
            for rel, data in files:
                pending.append(writers.submit(storage.write_bytes, storage.join(out, rel), data))
                n_files, n_bytes = n_files + 1, n_bytes + len(data)
            bar.update()
        bar.close()
        for rel, data in _text_files(world):
            pending.append(writers.submit(storage.write_bytes, storage.join(out, rel), data))
        for p in pending:
            p.result()
    b_set, a_set = world.det_split()
    return {
        "out": out,
        "categories": len(world.vocab),
        "detection_categories": config.det_categories,
        "set_b": len(b_set),
        "set_a": len(a_set),
        "leaf_categories": config.leaf_categories,
        "files": n_files,
        "megabytes": round(n_bytes / 1e6, 1),
        "seconds": round(time.time() - t0, 1),
    }
