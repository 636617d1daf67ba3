"""Drawn detections: a few boxes, labels that do not cover each other."""

import cv2

from pipeline.detect.draw import FONT, FONT_SCALE, _label_origin


def _rect(label, origin):
    (w, h), base = cv2.getTextSize(label, FONT, FONT_SCALE, 3)
    return origin[0], origin[1] - h, origin[0] + w, origin[1] + base


def test_labels_of_boxes_in_the_same_place_do_not_overlap():
    placed: list = []
    labels = ["tabby cat 3.2", "tiger cat 2.9", "lynx 2.5"]
    origins = [_label_origin(t, (40, 40), (200, 160), (400, 400, 3), placed) for t in labels]
    rects = [_rect(t, o) for t, o in zip(labels, origins, strict=True)]
    for i, a in enumerate(rects):
        assert 0 <= a[0] and a[2] <= 400 and 0 <= a[1] and a[3] <= 400
        for b in rects[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
