"""Device handling of the training loops, on CPU: the worker's device is ``meta`` here.

On a GPU worker, batches arrive on the CPU and the model lives on CUDA; every tensor a step or
a metric touches must be moved to the model's device (a CPU label against CUDA predictions
crashed ``train-cls --gpus``). Any op that mixes a meta tensor with a CPU tensor raises the
same "not on the expected device" error, so running the loops' functions with the model on
``meta`` and the batches moved by ``device_batches`` catches what a GPU would.

And a step must not make the host wait for the device (``HostSyncCounter``, on the CPU), and
its bf16 precision (a GPU's) must train as fp32 does (checked on the CPU, which has bf16 too).
"""

import pytest
import torch

from pipeline.model.host_syncs import HostSyncCounter
from pipeline.model.layers import configure_trainable, parse_layers
from pipeline.model.nets import get_model
from pipeline.model.preprocess import mean_tensor
from pipeline.train.classifier import cls_step, count_correct
from pipeline.train.detector import det_step, fg_bg_counts, fg_then_bg
from pipeline.train.device_feed import autocast, device_batches
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


def _on(device, batch: dict, train: bool = True) -> dict:
    (moved,) = device_batches([batch], device, 32, train)
    return moved


def test_a_classifier_step_and_its_metric_run_on_the_models_device(model):
    opt = torch.optim.Adam(model.parameters())
    mean, amp = mean_tensor(MEAN, META), autocast(META)
    loss = cls_step(model, opt, _on(META, _batch(8)), K, 32, mean, amp)
    assert loss.device == META and loss.dim() == 0
    counts = count_correct(model, _on(META, _batch(8), train=False), K, 32, mean, amp)
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
    fg, bg = _batch(4, 32, labels=[0, 1, 2, 0]), _batch(12, 32, labels=[K] * 12)
    (batch,) = device_batches(fg_then_bg([(fg, bg)]), META, 32, train=True)
    mean = mean_tensor(MEAN, META)
    loss, counts = det_step(model, opt, freezer, batch, cols, col_of_row, 32, mean, autocast(META))
    assert loss.device == META
    assert counts.device == META and counts.shape == (2,)


def _det_setup(seed: int = 0):
    torch.manual_seed(seed)
    model = get_model("smallcnn", K)
    freezer = configure_trainable(model, parse_layers("all+fcB"), [0, 1, 2, K])
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
        weight_decay=5e-4,
    )  # fmt: skip
    cols = torch.tensor([0, 1, 2, K])
    col_of_row = torch.full((K + 1,), -1, dtype=torch.long)
    col_of_row[cols] = torch.arange(4)
    return model, freezer, opt, cols, col_of_row


def test_training_steps_never_make_the_host_wait_for_the_device():
    """Zero reads and zero host copies inside either step (the configs' SGD): on a GPU the
    host queues step after step while the device runs them."""
    cpu = torch.device("cpu")
    model, freezer, opt, cols, col_of_row = _det_setup()
    mean, amp = mean_tensor(MEAN, cpu), autocast(cpu)
    fg, bg = _batch(4, 32, labels=[0, 1, 2, 0]), _batch(12, 32, labels=[K] * 12)
    for batch in device_batches(fg_then_bg([(fg, bg)] * 2), cpu, 32, train=True):
        with HostSyncCounter() as syncs:
            det_step(model, opt, freezer, batch, cols, col_of_row, 32, mean, amp)
        assert syncs.total == 0, syncs.counts
    cls_opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for batch in device_batches([_batch(8), _batch(8)], cpu, 32, train=True):
        with HostSyncCounter() as syncs:
            cls_step(model, cls_opt, batch, K, 32, mean, amp)
        assert syncs.total == 0, syncs.counts


def test_bf16_steps_train_as_fp32_steps_do():
    """50 detection steps from the same start on the same batches, fp32 and bf16 autocast
    (the GPU's precision; the CPU has it too): the losses agree within 0.02 at every step,
    and fp32's falls by more than 0.5."""
    cpu = torch.device("cpu")
    gen = torch.Generator().manual_seed(7)
    pairs = []
    for _ in range(5):  # a few fixed minibatches, seen 10 times each: the loss must fall
        fg_labels = torch.randint(0, 3, (8,), generator=gen).tolist()
        fg = _batch(8, 32, labels=fg_labels)
        fg["image"][:, :16] = torch.as_tensor(fg_labels, dtype=torch.uint8).view(8, 1, 1, 1) * 80
        pairs.append((fg, _batch(24, 32, labels=[K] * 24)))
    losses = {}
    for bf16 in (False, True):
        model, freezer, opt, cols, col_of_row = _det_setup(seed=1)
        torch.manual_seed(2)  # the same flips for both
        batches = device_batches(fg_then_bg(pairs * 10), cpu, 32, train=True)
        mean, amp = mean_tensor(MEAN, cpu), autocast(cpu, bf16=bf16)
        losses[bf16] = torch.stack(
            [det_step(model, opt, freezer, b, cols, col_of_row, 32, mean, amp)[0] for b in batches]
        )
    gap = (losses[True] - losses[False]).abs().max().item()
    fell = (losses[False][:5].mean() - losses[False][-5:].mean()).item()
    print(f"fp32 vs bf16 over 50 steps: largest loss gap {gap:.4f}, fp32 fell by {fell:.3f}")
    assert gap < 0.02 and fell > 0.5


def test_metrics_are_reduced_where_they_live():
    t = torch.tensor([3, 4])
    assert all_reduce_sum(t) is t  # no process group: nothing to reduce, no copy elsewhere


def test_fg_bg_counts_call_background_against_any_foreground():
    logits = torch.tensor([[5.0, 0.0, 1.0], [0.0, 5.0, 1.0], [0.0, 0.0, 9.0], [9.0, 0.0, 0.0]])
    y = torch.tensor([1, 1, 2, 2])  # column 2 is background
    # right: fg called fg (a wrong class still counts), fg called fg, bg called bg; wrong: bg
    assert fg_bg_counts(logits, y, bg_col=2).tolist() == [3, 4]


def test_windows_decoded_on_the_device_equal_those_decoded_by_the_read_tasks():
    """JPEG windows shipped encoded (``decode="device"``, a GPU worker's default) and decoded
    by the feed in one call give the pixels OpenCV gives in the read tasks, and rows from
    batches of any size still concatenate in the row pools."""
    import cv2
    import numpy as np

    from pipeline.train.data import window_arrays

    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)
    windows = [cv2.resize(np.roll(coarse, i, 0), (32, 32)) for i in range(5)]
    batch = {
        "label": ["n1", "__background__", "n1", "n2", "__background__"],
        "size": [32] * 5,
        "encoding": ["jpeg"] * 5,
        "pixels": [cv2.imencode(".jpg", w, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
                   for w in windows],
    }  # fmt: skip
    rows = {"n1": 0, "n2": 1, "__background__": 2}
    host = window_arrays(batch, rows, decode="host")
    shipped = window_arrays(batch, rows, decode="device")
    assert "image" not in shipped and shipped["jpeg"].shape[1] == 32 * 32 * 3 + 4096
    parts = [{k: torch.from_numpy(v[a:b]) for k, v in shipped.items()} for a, b in ((0, 2), (2, 5))]
    joined = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    (moved,) = device_batches([joined], torch.device("cpu"), 32, train=False)
    assert torch.equal(moved["image"], torch.from_numpy(host["image"]))
    assert moved["label"].tolist() == [0, 2, 0, 1, 2]
