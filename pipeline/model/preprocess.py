"""The networks' input: uint8 RGB images or windows -> the float tensor a network takes.

One definition for training, scoring and new categories alike: the pixel mean comes from the
model file (``pixel_mean``: the extraction's, which also filled the windows' outside), the
scale is fixed, the size is the network's ``input_size``.
"""

from __future__ import annotations

import torch

PIXEL_SCALE = 64.0  # (x - mean) / 64 puts uint8 images in roughly [-2, 2]


def to_input(
    images: torch.Tensor, size: int, mean, train: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, size, size): crop (random or centre), mirror.

    Runs on ``images``' device; the random draws come from ``generator`` (CPU) and only their
    offsets and mask move, so a seed gives the same crops on CPU and GPU."""
    b, h, w, _ = images.shape
    if h > size or w > size:
        if train:
            oy = torch.randint(0, h - size + 1, (b,), generator=generator)
            ox = torch.randint(0, w - size + 1, (b,), generator=generator)
            oy, ox = oy.tolist(), ox.tolist()
            images = torch.stack(
                [images[i, oy[i] : oy[i] + size, ox[i] : ox[i] + size] for i in range(b)]
            )
        else:
            oy, ox = (h - size) // 2, (w - size) // 2
            images = images[:, oy : oy + size, ox : ox + size]
    x = images.permute(0, 3, 1, 2).float()
    if train:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device).view(b, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
    return normalise(x, mean)


def normalise(pixels: torch.Tensor, mean) -> torch.Tensor:
    """float (B, 3, H, W) pixel values -> the network's input, on ``pixels``' device."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean_t) / PIXEL_SCALE
