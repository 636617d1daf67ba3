"""R-CNN's window warp in torch ops, on the device the network runs on.

The image goes to the device once and every window is cut out there, where the cv2 path
(``pipeline.extract.warp``) warps each window on a CPU core and ships all of them. The geometry is
``warp.warp_geometry``'s, vectorised: context padding, clipping to the image, anisotropic
scaling, mean fill outside the image. The sampling is cv2's ``INTER_LINEAR``: half-pixel
centres, clamped to the crop. Values are rounded to the uint8 levels the training windows were
stored at. The two paths differ only where OpenCV's 11-bit fixed-point weights round
differently (``bench/warp.py`` measures it).
"""

from __future__ import annotations

import torch
from torch.nn.functional import grid_sample


def axis_samples(
    lo: torch.Tensor, hi: torch.Tensor, limit: int, size: int, padding: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source coordinates (N, size) of the output pixels along one axis of N boxes
    (inclusive pixels ``lo..hi``), and which of them fall inside the image."""
    # float64, and torch.round (half to even) as Python's round(): warp_geometry's integers
    scale = size / (size - 2 * padding)
    centre, half = (lo + hi + 1) / 2, (hi - lo + 1) / 2 * scale
    e1, e2 = torch.round(centre - half), torch.round(centre + half) - 1
    c1, c2 = e1.clamp(min=0), torch.clamp(e2, max=limit - 1)
    s = size / (e2 - e1 + 1)
    offset = torch.round((c1 - e1) * s)
    extent = torch.minimum(torch.round((c2 - c1 + 1) * s).clamp(min=1), size - offset)
    j = torch.arange(size, dtype=torch.float64, device=lo.device)[None]
    u = (j - offset[:, None] + 0.5) * ((c2 - c1 + 1) / extent)[:, None] - 0.5
    u = torch.minimum(u.clamp(min=0), (c2 - c1)[:, None])
    inside = (j >= offset[:, None]) & (j < (offset + extent)[:, None])
    return c1[:, None] + u, inside


def warp_windows_torch(
    image: torch.Tensor, boxes: torch.Tensor, size: int, padding: float, fill: torch.Tensor
) -> torch.Tensor:
    """Warp ``boxes`` (N, 4) of ``image`` (3, H, W) float: (N, 3, size, size) float on the
    image's device, uint8 levels, ``fill`` (3,) outside the image."""
    _, h, w = image.shape
    n = boxes.shape[0]
    b = boxes.to(image.device, torch.float64) if boxes.device != image.device else boxes.double()
    x, in_x = axis_samples(b[:, 0], b[:, 2], w, size, padding)
    y, in_y = axis_samples(b[:, 1], b[:, 3], h, size, padding)
    # grid_sample's align_corners=True maps -1..1 onto pixel centres 0..W-1. The coordinates
    # are rounded to the image's dtype per axis, before the (N, size, size, 2) grid is made:
    # the same values as rounding the grid, at half the memory of a float64 one (1.7 GB at
    # 2,048 windows of 227 px).
    gx = (x * (2 / max(w - 1, 1)) - 1).to(image.dtype)
    gy = (y * (2 / max(h - 1, 1)) - 1).to(image.dtype)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    out = grid_sample(
        image[None].expand(n, -1, -1, -1),
        grid,
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    ).round_()
    inside = (in_y[:, :, None] & in_x[:, None, :])[:, None]
    return torch.where(inside, out, fill.to(out).view(1, 3, 1, 1))
