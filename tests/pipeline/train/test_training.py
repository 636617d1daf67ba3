"""Both fine-tuning stages through a real local Ray instance with 2 CPU workers."""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from pipeline.data.categories import read_categories
from pipeline.data.category_sets import set_b
from pipeline.extract.stage import run_extract
from pipeline.io import storage
from pipeline.io.ray_env import RAW_CONSOLE_VAR
from pipeline.model.checkpoints import load_model, save_model
from pipeline.model.nets import CategoryMap
from pipeline.toyworld.generate import generate
from pipeline.train.classifier import classification_categories, run_train_cls
from pipeline.train.detector import run_train_det
from pipeline.workdir import WorkDir
from schemas.config import CategorySplit, load_config, toyworld_config

pytestmark = pytest.mark.slow

EXTRACT = replace(load_config("configs/toyworld.yaml").extract, shard_size=16)
CLS = replace(load_config("configs/toyworld.yaml").train_cls, epochs=6, batch_size=32)
DET = replace(
    load_config("configs/toyworld.yaml").train_det, iterations=40, checkpoint_every=20, lr=3e-4
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_local):
    """A 6-category world, extracted and with a trained classifier (shared by the module)."""
    root = tmp_path_factory.mktemp("train")
    data, work = str(root / "data"), str(root / "work")
    cfg = toyworld_config(
        "test",
        det_categories=6,
        leaf_categories=2,
        cls_images=60,
        det_train_scenes=24,
        val1_scenes=24,
        val2_scenes=4,
        seed=5,
    )
    generate(data, cfg, progress=False)
    for split in ("cls", "det-train", "val1"):
        run_extract(data, work, split, EXTRACT, progress=False)
    summary = run_train_cls(data, work, CLS)
    return data, work, summary


def test_classifier_learns(trained):
    data, work, summary = trained
    assert summary["categories"] == 8 and summary["epoch"] == 6
    assert summary["holdout_accuracy"] > 0.4  # chance: 1/8
    _, categories, payload = load_model(WorkDir(work).model("cls.pt"))
    assert categories.wnids[:6] == tuple(c.wnid for c in read_categories(data))
    assert payload["kind"] == "cls" and payload["input_size"] == 32


def test_no_readers_group_outlives_its_fit(trained):
    """Each worker's readers' CPUs are reserved in a placement group for the fit only."""
    import ray.util

    groups = ray.util.placement_group_table().values()
    readers = [g for g in groups if g["name"].startswith("lsda-readers-")]
    assert readers and {g["state"] for g in readers} == {"REMOVED"}


def test_detection_finetune_resumes_after_a_failure_and_a_rerun_and_leaves_fcA_alone(trained):
    """One fit with a worker failure injected half-way (Ray Train restarts it from its
    checkpoint), a rerun that finds the model done, and a longer rerun after the model file
    was lost, which resumes from the fit's last checkpoint: two fits."""
    data, work, _ = trained
    cfg = replace(DET, inject_failure_at=20)
    summary = run_train_det(data, work, cfg, name="faulty")
    assert summary["iteration"] == 40 and summary["resumed_from"] == 20
    cls_model, categories, _ = load_model(WorkDir(work).model("cls.pt"))
    det_model, _, payload = load_model(WorkDir(work).model("det-faulty.pt"))
    b_rows = categories.rows(set_b(data, CategorySplit()))
    other = [r for r in range(categories.num_categories) if r not in b_rows]
    w_cls, w_det = cls_model.output.weight, det_model.output.weight
    assert torch.equal(w_cls[other], w_det[other])  # set A and leaves: bit for bit
    assert torch.equal(cls_model.output.bias[other], det_model.output.bias[other])
    assert not torch.equal(w_cls[b_rows], w_det[b_rows])
    assert det_model.output.weight[categories.background_row].abs().sum() > 0
    assert payload["set_b"] == set_b(data, CategorySplit()) and payload["kind"] == "det"

    assert run_train_det(data, work, cfg, name="faulty")["skipped"]
    # as if the job had died before writing its model: the run's checkpoints remain
    fs, path = storage.get_fs(WorkDir(work).model("det-faulty.pt"))
    fs.rm(path)
    longer = replace(DET, iterations=60)
    again = run_train_det(data, work, longer, name="faulty")
    assert again["resumed_from"] == 40 and again["iteration"] == 60


def test_auto_lengths_stop_on_a_plateau_say_why_and_stay_stopped(trained, tmp_path):
    """``iterations: auto`` / ``epochs: auto`` with a rule that any second report meets (no
    loss falls by 100%): each fit stops there, well short of its cap, and says why in its
    summary and model file; a fit resumed after it had stopped does not train on."""
    data, work, _ = trained
    det = replace(DET, iterations="auto", max_iterations=200, checkpoint_every=10, patience=1,
                  min_improvement=1.0)  # fmt: skip
    first = run_train_det(data, work, det, name="auto")
    assert first["iteration"] == 20 and first["stop"].startswith("plateau: training loss")
    # a fit from the start knows its first batch as the classifier scored it
    assert first["fg_bg_accuracy"] > first["fg_bg_accuracy_before"]
    _, _, payload = load_model(WorkDir(work).model("det-auto.pt"))
    assert payload["stop"] == first["stop"] and len(payload["history"]) == 2
    fs, path = storage.get_fs(WorkDir(work).model("det-auto.pt"))
    fs.rm(path)  # as if the job had died after its last checkpoint
    again = run_train_det(data, work, det, name="auto")
    assert again["iteration"] == 20 and again["stop"] == first["stop"]

    own = tmp_path / "work"  # the module's classifier stays as it is
    shutil.copytree(Path(work, "extract", "cls"), own / "extract" / "cls")
    cls = replace(CLS, epochs="auto", max_epochs=4, patience=1, min_improvement=1e9)
    summary = run_train_cls(data, str(own), cls)
    assert summary["epoch"] <= 3 and summary["stop"].startswith("plateau: held-out accuracy")


def mirror_boxes(root: Path, wnids: set[str]) -> int:
    """Mirror every box of ``wnids`` left-right in the DET annotations under ``root``: still
    valid boxes, in other places. Returns how many moved."""
    moved = 0

    def mirror(m: re.Match) -> str:
        nonlocal moved
        name, x1, y1, x2, y2 = m.group(1), *map(int, m.groups()[1:])
        if name not in wnids:
            return m.group(0)
        moved += 1
        x1, x2 = width - 1 - x2, width - 1 - x1
        return (
            f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )

    pattern = re.compile(
        r"<object><name>(\w+)</name><bndbox><xmin>(\d+)</xmin><ymin>(\d+)</ymin>"
        r"<xmax>(\d+)</xmax><ymax>(\d+)</ymax></bndbox></object>"
    )
    for xml in root.glob("ILSVRC2013_DET_bbox_*/**/*.xml"):
        text = xml.read_text()
        width = int(re.search(r"<width>(\d+)</width>", text).group(1))
        xml.write_text(pattern.sub(mirror, text))
    return moved


def test_no_training_input_depends_on_a_box_of_set_a(trained, tmp_path):
    """The paper's set A has no boxes. Moving all of them must change no training shard and no
    bit of the fine-tuned model; the oracle's windows, labelled with every box, do change."""
    data, work, _ = trained
    other_data, other_work = tmp_path / "data", tmp_path / "work"
    shutil.copytree(data, other_data)
    det = [c.wnid for c in read_categories(data)]
    assert mirror_boxes(other_data, set(det) - set(set_b(data, CategorySplit()))) > 10
    (other_work / "models").mkdir(parents=True)
    shutil.copy(WorkDir(work).model("cls.pt"), other_work / "models")
    cfg = replace(DET, iterations=10)

    def windows(w, split: str) -> list[bytes]:
        return [p.read_bytes() for p in sorted(Path(w, "extract", split, "windows").iterdir())]

    models = []
    for d, w in ((data, work), (str(other_data), str(other_work))):
        for split in ("det-train", "val1"):
            run_extract(d, w, split, EXTRACT, progress=False)
            run_extract(d, w, split, EXTRACT, progress=False, oracle=True)
        run_train_det(d, w, cfg, name="strict")
        models.append(load_model(WorkDir(w).model("det-strict.pt"))[0].state_dict())
    for split in ("det-train", "val1"):
        assert windows(work, split) == windows(other_work, split)
    # the built-in DET train scenes hold set B's objects only: set A's boxes are all in val1
    assert windows(work, "val1-oracle") != windows(other_work, "val1-oracle")
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])
    with pytest.raises(ValueError, match="labelled with the boxes of 3 categories"):
        run_train_det(
            data, work, cfg, name="mislabelled", sets=CategorySplit(set_b="all")
        )  # windows of set B only


def test_bad_inputs_are_refused_before_training(trained, tmp_path):
    data, work, _ = trained
    with pytest.raises(ValueError, match="window shards are 32 px but alexnet takes 227"):
        _, categories, _ = load_model(WorkDir(work).model("cls.pt"))
        other = str(tmp_path / "w")
        fs, _ = storage.get_fs(work)
        fs.cp(f"{work}/extract", f"{other}/extract", recursive=True)
        from pipeline.model.nets import get_model

        save_model(
            WorkDir(other).model("cls.pt"),
            get_model("alexnet", categories.num_categories),
            "alexnet",
            categories,
            input_size=227,
            pixel_mean=[0, 0, 0],
        )
        run_train_det(data, other, DET)
    with pytest.raises(ValueError, match="category map lacks window labels"):
        save_model(
            WorkDir(other).model("cls.pt"),
            get_model("smallcnn", 2),
            "smallcnn",
            CategoryMap(("x", "y")),
            input_size=32,
            pixel_mean=[0, 0, 0],
        )
        run_train_det(data, other, DET)


def test_a_category_without_images_is_refused(trained, tmp_path):
    data, _, _ = trained
    url = str(tmp_path / "part.parquet")
    storage.write_table(url, pa.table({"wnid": ["n90000000"], "name": ["n90000000_1"]}))
    with pytest.raises(ValueError, match="no classification images for 5 detection categories"):
        classification_categories(data, [url])


def test_checkpoints_on_s3(trained, s3_bucket):
    data, _, _ = trained
    work = f"{s3_bucket}/work"
    run_extract(data, work, "cls", EXTRACT, progress=False)
    cfg = replace(CLS, epochs=1)
    summary = run_train_cls(data, work, cfg)
    assert summary["model"] == f"{work}/models/cls.pt" and storage.exists(summary["model"])
    assert storage.find(f"{work}/train/cls", (".pt",))  # Ray Train's checkpoint on S3


def test_each_workers_readers_have_their_cpus_so_ray_has_nothing_to_say(trained, tmp_path):
    """Two workers' readers in CPUs planned for them (pipeline/train/resources.py): with Ray
    Data's starvation warning at 0 s (60 s by default) and our console filter off, no Ray Data
    line reaches the console, and the workers' prefixed lines are our progress lines. Before
    the plan, one worker's readers were granted no CPU while the other's ran: "Cluster
    resources are not enough to run any task ... The job may hang forever"."""
    data, work, _ = trained
    shutil.copytree(Path(work, "extract/cls"), tmp_path / "work/extract/cls")
    env = {**os.environ, RAW_CONSOLE_VAR: "1", "RAY_DATA_STARVATION_WARNING_DELAY_S": "0"}
    argv = ["train-cls", "--data", data, "--work", str(tmp_path / "work"), "--config", "toyworld"]
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", *argv, "--epochs", "3", "--workers", "2"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    console = (done.stdout + done.stderr).splitlines()
    print("lsda train-cls, unfiltered console:", *console, sep="\n")
    assert done.returncode == 0, "\n".join(console[-30:])
    ray_data = ("may hang", "not enough to run", "(MapWorker", "(MapBatches", "ray.data")
    assert [x for x in console if any(s in x for s in ray_data)] == []
    workers = [x for x in console if "(RayTrainWorker" in x]
    assert len(workers) == 3 and all("train-cls epoch" in x for x in workers)
