import cv2
import numpy as np

from pipeline.extract.warp import context_padding, warp_geometry, warp_windows

MEAN = np.array([10.0, 20.0, 30.0])


def _scene():
    """Black 120 x 100 image with a white square at x, y in [40, 59]."""
    image = np.zeros((100, 120, 3), np.uint8)
    image[40:60, 40:60] = 255
    return image


def test_box_lands_inside_the_context_padding():
    size, pad = 227, context_padding(227)
    assert pad == 16
    (sx1, sy1, sx2, sy2), (dx, dy, dw, dh) = warp_geometry((40, 40, 59, 59), 120, 100, size, pad)
    # 20 px box dilated by 227/195 about its centre 50: [38.4, 61.6) -> pixels 38..61
    assert (sx1, sx2, dx, dw) == (38, 61, 0, 227)
    window = warp_windows(_scene(), np.array([[40, 40, 59, 59]]), size, pad, MEAN)[0]
    assert window[113, 113].tolist() == [255, 255, 255]  # the box's centre
    assert window[3, 113].tolist() == [0, 0, 0]  # context above the box: image pixels
    white = np.nonzero(window[113, :, 0] > 128)[0]
    # box edges at the padding, within the half source pixel that integer cropping rounds off
    tolerance = 227 / 24 / 2 + 1
    assert abs(white[0] - 16) <= tolerance and abs(white[-1] - 210) <= tolerance


def test_outside_the_image_is_mean_filled():
    window = warp_windows(_scene(), np.array([[0, 0, 19, 19]]), 32, context_padding(32), MEAN)[0]
    assert window[0, 0].tolist() == [10, 20, 30]  # dilated past the corner: mean
    assert window[16, 16].tolist() == [0, 0, 0]


def test_matches_the_plain_crop_and_resize():
    """A box whose dilation stays inside: the window is the resized dilated crop."""
    image = (np.random.default_rng(0).random((100, 120, 3)) * 255).astype(np.uint8)
    size, pad = 64, context_padding(64)
    box = (30, 20, 79, 69)
    (sx1, sy1, sx2, sy2), (dx, dy, dw, dh) = warp_geometry(box, 120, 100, size, pad)
    assert (dx, dy, dw, dh) == (0, 0, size, size)
    expected = cv2.resize(image[sy1 : sy2 + 1, sx1 : sx2 + 1], (size, size))
    np.testing.assert_array_equal(
        warp_windows(image, np.array([box]), size, pad, MEAN)[0], expected
    )


def test_rewarp_is_deterministic():
    image = (np.random.default_rng(1).random((80, 90, 3)) * 255).astype(np.uint8)
    boxes = np.array([[0, 0, 89, 79], [3.0, 5.0, 20.0, 60.0], [70, 70, 89, 79]], np.float32)
    a = warp_windows(image, boxes, 32, context_padding(32), MEAN)
    b = np.stack(
        [warp_windows(image, boxes[i : i + 1], 32, context_padding(32), MEAN)[0] for i in range(3)]
    )
    np.testing.assert_array_equal(a, b)
