"""The torch warp against the cv2 warp it replaces on a GPU: same geometry, same fill, values
within OpenCV's fixed-point rounding; and it runs wholly on the image's device."""

import numpy as np
import pytest
import torch

from pipeline.detect.warp_torch import warp_windows_torch
from pipeline.extract.warp import context_padding, warp_geometry, warp_windows

MEAN = np.array([10.0, 20.0, 30.0])


def _image(h: int = 100, w: int = 120, seed: int = 0) -> np.ndarray:
    """Smooth random colours: bilinear sampling differences stay small, as on photos."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    import cv2

    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(
        np.uint8
    )


def _boxes(n: int, w: int, h: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x1, y1 = rng.integers(0, w - 4, n), rng.integers(0, h - 4, n)
    x2 = np.minimum(x1 + rng.integers(3, w, n), w - 1)
    y2 = np.minimum(y1 + rng.integers(3, h, n), h - 1)
    return np.stack([x1, y1, x2, y2], 1).astype(np.float32)


def _torch_warp(image: np.ndarray, boxes: np.ndarray, size: int, device="cpu") -> torch.Tensor:
    pixels = torch.from_numpy(image).to(device).permute(2, 0, 1).float()
    fill = torch.from_numpy(np.round(MEAN)).to(device)
    return warp_windows_torch(pixels, torch.from_numpy(boxes), size, context_padding(size), fill)


@pytest.mark.parametrize("size", [32, 64, 227])
def test_windows_equal_the_cv2_windows_within_a_level(size):
    image = _image()
    boxes = np.concatenate([_boxes(200, 120, 100), [[0, 0, 119, 99], [0, 0, 5, 5]]])
    want = torch.from_numpy(warp_windows(image, boxes, size, context_padding(size), MEAN))
    got = _torch_warp(image, boxes, size)
    diff = (got - want.permute(0, 3, 1, 2).float()).abs()
    assert diff.max() <= 1  # OpenCV's 11-bit weights round some pixels the other way
    assert diff.mean() < 0.2


def test_fill_geometry_and_integer_scale_match_exactly():
    """Where no interpolation happens (a window at 1:1 scale) the paths agree to the bit,
    the mean fill included: the geometry is warp_geometry's."""
    size, pad = 32, context_padding(32)
    image = _image()

    def one_to_one(side: int) -> bool:  # dilated to exactly `size` pixels, past the corner
        (sx1, _, sx2, _), (dx, _, dw, _) = warp_geometry(
            (0, 0, side - 1, side - 1), 120, 100, size, pad
        )
        return dx > 0 and dw == sx2 - sx1 + 1

    side = next(s for s in range(8, 40) if one_to_one(s))
    box = np.array([[0, 0, side - 1, side - 1]], np.float32)
    want = warp_windows(image, box, size, pad, MEAN)[0]
    got = _torch_warp(image, box, size)[0].permute(1, 2, 0).to(torch.uint8).numpy()
    np.testing.assert_array_equal(got, want)


def test_the_warp_runs_on_the_images_device():
    image = torch.zeros(3, 50, 60, device="meta")
    boxes = torch.tensor([[0.0, 0.0, 20.0, 30.0], [5.0, 5.0, 59.0, 49.0]])
    fill = torch.tensor([1.0, 2.0, 3.0])
    out = warp_windows_torch(image, boxes, 32, context_padding(32), fill)
    assert out.device.type == "meta" and out.shape == (2, 3, 32, 32)


def test_the_float32_grid_samples_what_a_float64_grid_did():
    """The sampling grid is made in float32 from per-axis coordinates: every output pixel
    equals the one a float64 grid (rounded to float32 for grid_sample) gave."""
    from torch.nn.functional import grid_sample

    from pipeline.detect.warp_torch import axis_samples

    image, size = _image(), 64
    boxes = np.concatenate([_boxes(40, 120, 100), [[-30, -20, 150, 130], [5, 5, 5, 5]]])
    pixels = torch.from_numpy(image).permute(2, 0, 1).float()
    fill = torch.from_numpy(np.round(MEAN))
    got = warp_windows_torch(pixels, torch.from_numpy(boxes.astype(np.float32)), size,
                             context_padding(size), fill)  # fmt: skip
    b = torch.from_numpy(boxes).double()
    pad = context_padding(size)
    x, in_x = axis_samples(b[:, 0], b[:, 2], 120, size, pad)
    y, in_y = axis_samples(b[:, 1], b[:, 3], 100, size, pad)
    grid64 = torch.stack(
        torch.broadcast_tensors((x * (2 / 119) - 1)[:, None, :], (y * (2 / 99) - 1)[:, :, None]),
        dim=-1,
    )
    out = grid_sample(pixels[None].expand(len(b), -1, -1, -1), grid64.float(), mode="bilinear",
                      padding_mode="border", align_corners=True).round_()  # fmt: skip
    inside = (in_y[:, :, None] & in_x[:, None, :])[:, None]
    want = torch.where(inside, out, fill.to(out).view(1, 3, 1, 1))
    assert torch.equal(got, want)
