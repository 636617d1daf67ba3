import numpy as np
import pytest

from pipeline.data.boxes import best_overlap, iou_matrix, label_by_iou


def test_iou_inclusive_pixels():
    a = np.array([[0, 0, 9, 9]])  # 10 x 10
    b = np.array([[0, 0, 9, 9], [5, 0, 14, 9], [10, 10, 19, 19], [0, 0, 4, 9]])
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0, 0.5])


def test_labels_follow_the_best_box_at_half_overlap():
    gt = np.array([[0, 0, 9, 9], [20, 20, 39, 39]])
    props = np.array(
        [[0, 0, 9, 9], [5, 0, 14, 9], [0, 0, 4, 9], [20, 20, 38, 39], [50, 50, 60, 60]]
    )
    labels, ious = label_by_iou(props, gt, ["cat", "dog"])
    assert labels == ["cat", None, "cat", "dog", None]  # IoU exactly 0.5 is foreground
    assert ious[1] == pytest.approx(1 / 3) and ious[4] == 0


def test_no_ground_truth_means_background():
    best, ious = best_overlap(np.array([[0, 0, 5, 5]]), np.zeros((0, 4)))
    assert best.tolist() == [-1] and ious.tolist() == [0.0]
