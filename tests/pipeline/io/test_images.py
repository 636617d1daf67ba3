import io

import numpy as np
import pytest
from PIL import Image

from pipeline.io.images import ImageError, decode_rgb

MEAN = (100.0, 110.0, 120.0)


def _encode(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _rgb(w=40, h=30) -> Image.Image:
    return Image.fromarray((np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8))


def decode(data, max_pixels=10**6, min_side=8):
    return decode_rgb(data, max_pixels, min_side, MEAN)


def test_plain_rgb_jpeg():
    image, note = decode(_encode(_rgb()))
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8 and note == ""


@pytest.mark.parametrize("mode, note", [("L", "L->RGB"), ("CMYK", "CMYK->RGB")])
def test_grayscale_and_cmyk_are_converted_and_noted(mode, note):
    image, got = decode(_encode(_rgb().convert(mode)))
    assert image.shape == (30, 40, 3) and got == note


def test_png_alpha_is_composited_over_the_mean():
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:10, :, :3] = 255
    rgba[:10, :, 3] = 255  # top half opaque white, bottom half transparent
    image, note = decode(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert image[0, 0].tolist() == [255, 255, 255]
    assert image[15, 0].tolist() == [100, 110, 120]
    assert note == "RGBA->RGB over mean"


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"", "empty-file"),
        (b"\xff\xd8\xff\xe0 definitely not a jpeg", "corrupt-image"),
        (_encode(_rgb(200, 200))[:600], "corrupt-image"),  # truncated
        (_encode(_rgb(6, 40)), "too-small"),
        (_encode(_rgb(1200, 1000)), "too-large"),
    ],
)
def test_bad_images_are_refused_with_a_kind(data, kind):
    with pytest.raises(ImageError) as err:
        decode(data)
    assert err.value.kind == kind
