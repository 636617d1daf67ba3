import dataclasses
from pathlib import Path

import pytest

from pipeline.model.nets import get_model
from schemas.config import RunConfig, load_config

CONFIGS = sorted(str(p) for p in Path("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS)
def test_every_config_loads_into_the_dataclasses(path):
    for quick in (False, True):
        cfg = load_config(path, quick)
        assert cfg.train_cls.model == cfg.train_det.model
        assert get_model(cfg.train_cls.model, 2).input_size == cfg.extract.window_size
        assert cfg.extract.cls_size >= cfg.extract.window_size
        assert cfg.score_vocab.cross_nms == 0.4


def test_ilsvrc13_is_the_papers_protocol():
    cfg = load_config("ilsvrc13")
    ext, det, run = cfg.extract, cfg.train_det, cfg.run
    assert (det.model, ext.window_size, ext.train_images_per_class) == ("alexnet", 227, 1000)
    assert (det.optimizer, det.lr, det.momentum, det.weight_decay) == ("sgd", 0.001, 0.9, 5e-4)
    assert (det.fg_per_batch, det.bg_per_batch, det.lr_step) == (32, 96, 20_000)
    assert run.eval_split == "val2" and run.k == 5 and cfg.detect.nms_iou == 0.3
    assert cfg.categories.set_b == "first-half"


def test_quick_overrides_only_what_it_names():
    full, quick = load_config("toyworld"), load_config("toyworld", quick=True)
    assert quick.train_cls.epochs != full.train_cls.epochs
    assert dataclasses.replace(quick.train_cls, epochs=full.train_cls.epochs) == full.train_cls
    assert quick.extract == full.extract and quick.scoring == full.scoring


def test_no_file_gives_the_defaults():
    assert load_config(None) == RunConfig()


def test_unknown_sections_and_keys_name_themselves(tmp_path):
    bad_key = tmp_path / "key.yaml"
    bad_key.write_text("train_det:\n  iterations: 5\n  set_b: all\n")
    with pytest.raises(ValueError, match=r"\[train_det\]: unknown keys \['set_b'\]"):
        load_config(str(bad_key))
    bad_section = tmp_path / "section.yaml"
    bad_section.write_text("post:\n  nms_iou: 0.5\n")
    with pytest.raises(ValueError, match=r"unknown sections \['post'\]"):
        load_config(str(bad_section))
