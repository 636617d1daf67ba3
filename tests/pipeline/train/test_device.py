"""Device handling of the training loops, on CPU: the worker's device is ``meta`` here.

On a GPU worker, batches arrive on the CPU and the model lives on CUDA; every tensor a step or
a metric touches must be moved to the model's device (a CPU label against CUDA predictions
crashed ``train-cls --gpus``). Any op that mixes a meta tensor with a CPU tensor raises the
same "not on the expected device" error, so running the loops' functions with the model on
``meta`` and the batches on the CPU catches what a GPU would.
"""

import pytest
import torch

from pipeline.model.layers import configure_trainable, parse_layers
from pipeline.model.nets import get_model
from pipeline.train.classifier import cls_step, count_correct
from pipeline.train.detector import det_step, fg_bg_counts
from pipeline.train.trainer import all_reduce_sum

META = torch.device("meta")
MEAN = (120.0, 115.0, 100.0)
K = 6  # categories; row K is background


def _batch(n: int, size: int = 36, labels=None) -> dict:
    return {
        "image": torch.randint(0, 255, (n, size, size, 3), dtype=torch.uint8),
        "label": torch.as_tensor(labels if labels is not None else [i % K for i in range(n)]),
    }


@pytest.fixture
def model():
    return get_model("smallcnn", K).to(META)


def test_a_classifier_step_and_its_metric_run_on_the_models_device(model):
    opt = torch.optim.Adam(model.parameters())
    loss = cls_step(model, opt, _batch(8), K, 32, MEAN, META)
    assert loss.device == META and loss.dim() == 0
    counts = count_correct(model, _batch(8), K, 32, MEAN, META)
    assert counts.device == META and counts.dtype == torch.int64


def test_the_same_functions_refuse_a_batch_left_on_another_device(model):
    # the check above is not vacuous: an op on mixed devices does raise here
    x = torch.zeros(2, 3, 32, 32)
    with pytest.raises(RuntimeError, match="device"):
        model(x)


def test_a_detection_step_and_its_metric_run_on_the_models_device(model):
    cpu_model = get_model("smallcnn", K)
    freezer = configure_trainable(cpu_model, parse_layers("all+fcB"), [0, 1, 2, K])
    model = cpu_model.to(META)
    freezer.to(META)
    assert freezer.weight.device == META and freezer.frozen.device == META
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad])
    cols = torch.tensor([0, 1, 2, K], device=META)
    col_of_row = torch.full((K + 1,), -1, dtype=torch.long, device=META)
    col_of_row[cols] = torch.arange(4, device=META)
    fg, bg = _batch(4, labels=[0, 1, 2, 0]), _batch(12, labels=[K] * 12)
    loss, counts = det_step(model, opt, freezer, fg, bg, cols, col_of_row, 32, MEAN, META)
    assert loss.device == META
    assert counts.device == META and counts.shape == (2,)


def test_metrics_are_reduced_where_they_live():
    t = torch.tensor([3, 4])
    assert all_reduce_sum(t) is t  # no process group: nothing to reduce, no copy elsewhere


def test_fg_bg_counts_call_background_against_any_foreground():
    logits = torch.tensor([[5.0, 0.0, 1.0], [0.0, 5.0, 1.0], [0.0, 0.0, 9.0], [9.0, 0.0, 0.0]])
    y = torch.tensor([1, 1, 2, 2])  # column 2 is background
    # right: fg called fg (a wrong class still counts), fg called fg, bg called bg; wrong: bg
    assert fg_bg_counts(logits, y, bg_col=2).tolist() == [3, 4]
