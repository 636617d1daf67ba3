"""The networks' input: uint8 RGB images or windows -> the float tensor a network takes.

One definition for training, scoring and new categories alike: the pixel mean comes from the
model file (``pixel_mean``: the extraction's, which also filled the windows' outside), the
scale is fixed, the size is the network's ``input_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PIXEL_SCALE = 64.0  # (x - mean) / 64 puts uint8 images in roughly [-2, 2]


@dataclass
class Augment:
    """One batch's random crop offsets (None: no crop) and mirror flags (bool, on the images'
    device)."""

    crops: tuple[list[int], list[int]] | None
    flip: torch.Tensor


def draw_augment(
    n: int, h: int, w: int, size: int, generator: torch.Generator | None = None
) -> Augment:
    """The random draws of a training input, on the host: crop offsets, then mirror flags."""
    crops = None
    if h > size or w > size:
        oy = torch.randint(0, h - size + 1, (n,), generator=generator)
        ox = torch.randint(0, w - size + 1, (n,), generator=generator)
        crops = oy.tolist(), ox.tolist()
    return Augment(crops, torch.rand(n, generator=generator) < 0.5)


def to_input(
    images: torch.Tensor,
    size: int,
    mean,
    train: bool,
    generator: torch.Generator | None = None,
    augment: Augment | None = None,
) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, size, size): crop (random or centre), mirror.

    Runs on ``images``' device. The random draws come from ``generator`` (CPU), or were made
    before (``augment``, drawn by ``draw_augment`` with its flags already on the device: the
    training step then waits for nothing); a seed gives the same crops on CPU and GPU."""
    b, h, w, _ = images.shape
    if train and augment is None:
        augment = draw_augment(b, h, w, size, generator)
        augment.flip = augment.flip.to(images.device)
    if h > size or w > size:
        if train:
            oy, ox = augment.crops
            images = torch.stack(
                [images[i, oy[i] : oy[i] + size, ox[i] : ox[i] + size] for i in range(b)]
            )
        else:
            oy, ox = (h - size) // 2, (w - size) // 2
            images = images[:, oy : oy + size, ox : ox + size]
    x = images.permute(0, 3, 1, 2).float()
    if train:
        x = torch.where(augment.flip.view(b, 1, 1, 1), x.flip(3), x)
    return normalise(x, mean)


@torch.no_grad()
def fc7_features(
    model,
    images: torch.Tensor | np.ndarray,
    mean,
    mirror: bool = False,
    batch: int = 256,
    layer: str = "fc7",
) -> torch.Tensor:
    """fc7 (or, with ``layer="fc6"``, relu(fc6)) features of uint8 (N, S, S, 3) images or
    windows, centre crop (and, with ``mirror``, their mirror images after them), ``batch`` at
    a time, the model in eval mode."""
    model.eval()
    x = to_input(torch.as_tensor(images), model.input_size, mean, train=False)
    if mirror:
        x = torch.cat([x, x.flip(3)])
    forward = getattr(model, f"{layer}_features")
    out = [torch.zeros(0, getattr(model, layer).out_features)]
    return torch.cat(out + [forward(x[i : i + batch]) for i in range(0, len(x), batch)])


def mean_tensor(mean, device: torch.device) -> torch.Tensor:
    """The pixel mean as the (1, 3, 1, 1) tensor ``normalise`` takes, made on ``device`` once
    (per fit, per scoring actor) instead of at every call."""
    return torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1).to(device)


def normalise(pixels: torch.Tensor, mean) -> torch.Tensor:
    """float (B, 3, H, W) pixel values -> the network's input, on ``pixels``' device;
    ``mean`` a sequence, or a (1, 3, 1, 1) tensor already there."""
    if not isinstance(mean, torch.Tensor):
        mean = mean_tensor(mean, pixels.device)
    return (pixels - mean) / PIXEL_SCALE
