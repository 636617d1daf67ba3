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
import os
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
        out = {"label": on_device(batch["label"], device)}
        out["image"] = (
            decode_windows(batch["jpeg"], batch["jpeg_len"], device)
            if "jpeg" in batch
            else on_device(batch["image"], device)
        )
        if train:
            b, h, w, _ = out["image"].shape
            aug = draw_augment(b, h, w, size)
            out["augment"] = Augment(aug.crops, on_device(aug.flip, device))
        return out

    return (move(batch) for batch in batches)


def window_decode(device: torch.device) -> str:
    """Where JPEG training windows are decoded: on the GPU (nvJPEG, one call per batch) for a
    CUDA worker, else by the read tasks with OpenCV. ``LSDA_WINDOW_DECODE=host|device``
    overrides (``bench/gpu_train.py`` measures both)."""
    wanted = os.environ.get("LSDA_WINDOW_DECODE", "auto")
    if wanted not in ("auto", "host", "device"):
        raise ValueError("LSDA_WINDOW_DECODE must be auto, host or device")
    if wanted == "auto":
        return "device" if device.type == "cuda" else "host"
    return wanted


def decode_windows(jpeg: torch.Tensor, lengths: torch.Tensor, device: torch.device):
    """Padded JPEG rows (``data.jpeg_rows``) -> uint8 (N, H, W, 3) RGB windows on ``device``,
    decoded there in one batched call (on the CPU, by libjpeg-turbo as OpenCV's is)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    datas = [jpeg[i, :n] for i, n in enumerate(lengths.tolist())]
    images = decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)
    return torch.stack(images).permute(0, 2, 3, 1)


def setup_for_training(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` on ``device``, channels-last on a GPU; cuDNN's autotuner on there."""
    model = model.to(device)
    if device.type != "cuda":
        return model
    torch.backends.cudnn.benchmark = True
    return model.to(memory_format=torch.channels_last)


def layout(x: torch.Tensor) -> torch.Tensor:
    """A step's input as its model wants it: channels-last on a GPU; on the CPU as ``to_input``
    made it (whatever its strides: making it contiguous changes the CPU's convolution, and with
    it a CPU run's numbers)."""
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


def autocast(device: torch.device, bf16: bool | None = None):
    """The step's precision: bf16 autocast on a GPU (``bf16`` None), fp32 on the CPU."""
    if bf16 is None:
        bf16 = device.type == "cuda"
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
