"""Selective search proposals are a function of the image alone."""

import glob

import cv2
import numpy as np

from pipeline.extract.proposals import _libc, selective_search


def test_proposals_do_not_depend_on_what_ran_before(tiny_world):
    path = sorted(glob.glob(f"{tiny_world}/ILSVRC2013_DET_val/*.JPEG"))[0]
    image = cv2.imread(path)[..., ::-1]
    first = selective_search(image, 0, 1024, 8)
    for _ in range(3):  # OpenCV's ranking draws from the C library's rand()
        _libc().rand()
        assert np.array_equal(selective_search(image, 0, 1024, 8), first)
    assert len(first) > 50


def test_under_the_cap_the_rand_state_does_not_matter(tiny_world, monkeypatch):
    """Other threads of a Ray worker call rand() too: seeding alone is not enough there."""
    import pipeline.extract.proposals as proposals

    path = sorted(glob.glob(f"{tiny_world}/ILSVRC2013_DET_val/*.JPEG"))[1]
    image = cv2.imread(path)[..., ::-1]
    first = selective_search(image, 0, 1024, 8)
    monkeypatch.setattr(proposals, "seed_opencv_rand", lambda seed=0: _libc().srand(seed + 7))
    assert np.array_equal(selective_search(image, 0, 1024, 8), first)
