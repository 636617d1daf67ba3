from pathlib import Path

import pytest

from pipeline.model.nets import get_model
from pipeline.run import load_configs

CONFIGS = sorted(str(p) for p in Path("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS)
def test_every_config_loads_into_the_dataclasses(path):
    for quick in (False, True):
        ext, cls, det, run = load_configs(path, quick)
        assert cls.model == det.model
        assert get_model(cls.model, 2).input_size == ext.window_size
        assert ext.cls_size >= ext.window_size


def test_ilsvrc13_is_the_papers_protocol():
    ext, cls, det, run = load_configs("configs/ilsvrc13.yaml", False)
    assert (det.model, ext.window_size, ext.train_images_per_class) == ("alexnet", 227, 1000)
    assert (det.optimizer, det.lr, det.momentum, det.weight_decay) == ("sgd", 0.001, 0.9, 5e-4)
    assert (det.fg_per_batch, det.bg_per_batch, det.lr_step) == (32, 96, 20_000)
    assert run.eval_split == "val2" and run.k == 5 and run.nms_iou == 0.3


@pytest.mark.parametrize("path", CONFIGS)
def test_score_vocab_sections_load(path):
    from pipeline.detect.vocab import VocabPostConfig
    from schemas.config import load_section

    assert load_section(path, "score_vocab", VocabPostConfig).cross_nms == 0.4
