"""Training minibatches onto the device ahead of the step that takes them, and the precision
and memory layout a step runs in.

A step on a GPU runs at the GPU's speed only if the host never waits for the device inside
it (``pipeline.model.host_syncs`` counts; a test asserts zero for both steps). So everything
the step needs is made before it, here:

- the augmentation is drawn on the host (crop offsets as Python ints, mirror flags), from the
  same generator and in the same order as ``to_input`` would draw them inside the step, so a
  CPU run's numbers do not change;
- on a GPU, the batch is pinned and copied with ``non_blocking``. With no wait inside the
  step, the host has queued step i's kernels and goes on to read, decode, pin and queue batch
  i+1 while the device runs step i: nothing needs to be drawn further ahead (and on the CPU,
  drawing ahead would interleave the augmentation's draws with dropout's, one generator there).

On a GPU the step runs under bf16 autocast, on a channels-last model with cuDNN's autotuner on
(the windows are one size); on the CPU, fp32 as before (bf16 is slower there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch

from pipeline.model.host_syncs import on_device
from pipeline.model.preprocess import Augment, draw_augment


def device_batches(
    batches: Iterable[dict], device: torch.device, size: int, train: bool
) -> Iterator[dict]:
    """``batches`` (uint8 ``image`` (B, H, W, 3) and ``label`` on the host) on ``device``,
    with their ``augment`` when ``train``."""

    def move(batch: dict) -> dict:
        out = {k: on_device(batch[k], device) for k in ("image", "label")}
        if train:
            b, h, w, _ = batch["image"].shape
            aug = draw_augment(b, h, w, size)
            out["augment"] = Augment(aug.crops, on_device(aug.flip, device))
        return out

    return (move(batch) for batch in batches)


def setup_for_training(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` on ``device``, channels-last on a GPU; cuDNN's autotuner on there."""
    model = model.to(device)
    if device.type != "cuda":
        return model
    torch.backends.cudnn.benchmark = True
    return model.to(memory_format=torch.channels_last)


def memory_format(device: torch.device) -> torch.memory_format:
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def autocast(device: torch.device, bf16: bool | None = None):
    """The step's precision: bf16 autocast on a GPU (``bf16`` None), fp32 on the CPU."""
    if bf16 is None:
        bf16 = device.type == "cuda"
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def mean_tensor(mean, device: torch.device) -> torch.Tensor:
    """The pixel mean as a (1, 3, 1, 1) tensor on ``device``, made once per fit."""
    return torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1).to(device)
