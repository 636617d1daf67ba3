"""Decode untrusted image bytes into RGB uint8, or say exactly why not.

Grayscale, CMYK and palette images are converted to RGB and images with alpha are composited
over the pixel mean (real ImageNet holds all of these); the conversion is reported so that the
manifest records it. Corrupt, truncated, empty, too small and too large images are refused.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image


class ImageError(ValueError):
    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def decode_rgb(
    data: bytes, max_pixels: int, min_side: int, mean: tuple[float, float, float]
) -> tuple[np.ndarray, str]:
    """Return (H x W x 3 uint8 RGB, note); the note names a colour conversion, if any."""
    if not data:
        raise ImageError("empty-file", "zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:  # checked before any pixel is decoded
                raise ImageError("too-large", f"{w}x{h} exceeds {max_pixels} pixels")
            img.load()  # raises on truncated data
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("too-large", str(exc)) from exc
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ImageError("corrupt-image", f"{type(exc).__name__}: {exc}") from exc
    if min(w, h) < min_side:
        raise ImageError("too-small", f"{w}x{h} is smaller than the minimum box size {min_side}")
    return _to_rgb(img, mean)


def _to_rgb(img: Image.Image, mean: tuple[float, float, float]) -> tuple[np.ndarray, str]:
    mode = img.mode
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "P+alpha"
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = np.asarray(img.convert("RGBA"), np.float32)
        alpha = rgba[..., 3:] / 255.0
        rgb = rgba[..., :3] * alpha + np.asarray(mean, np.float32) * (1 - alpha)
        return np.round(rgb).astype(np.uint8), f"{mode}->RGB over mean"
    if img.mode != "RGB":
        return np.asarray(img.convert("RGB")), f"{mode}->RGB"
    return np.asarray(img), ""
