import io

import numpy as np
import pytest
from scipy.io import savemat

from pipeline.data.categories import parse_map_det, parse_meta_det, read_categories
from schemas.records import Category, DataError


def test_map_det_with_and_without_names():
    text = "n02672831 1 accordion\nn02691156 2 airplane\n\nn02219486 3\n"
    assert parse_map_det(text, "m") == [
        Category("n02672831", 1, "accordion"),
        Category("n02691156", 2, "airplane"),
        Category("n02219486", 3, "n02219486"),
    ]


@pytest.mark.parametrize(
    "text, words", [("n1 x accordion\n", "line 1"), ("", "no detection"), ("a 1\na 2\n", "twice")]
)
def test_map_det_errors(text, words):
    with pytest.raises(DataError, match=words):
        parse_map_det(text, "devkit/data/map_det.txt")


def _meta_det_bytes() -> bytes:
    """The official struct layout: categories are the synsets without children."""
    dtype = [
        ("ILSVRC2013_DET_ID", "O"),
        ("WNID", "O"),
        ("name", "O"),
        ("description", "O"),
        ("num_children", "O"),
        ("children", "O"),
    ]
    rows = [
        (2, "n02691156", "airplane", "heavier-than-air craft", 0, np.zeros((1, 0))),
        (1, "n02672831", "accordion", "a portable box-shaped instrument", 0, np.zeros((1, 0))),
        (201, "n00007846", "person", "internal node", 1, np.array([[1]])),
    ]
    synsets = np.array(rows, dtype=dtype).reshape(1, -1)
    buf = io.BytesIO()
    savemat(buf, {"synsets": synsets})
    return buf.getvalue()


def test_meta_det_mat():
    cats = parse_meta_det(_meta_det_bytes(), "meta_det.mat")
    assert cats == [Category("n02672831", 1, "accordion"), Category("n02691156", 2, "airplane")]


def test_meta_det_garbage_names_file():
    with pytest.raises(DataError, match="meta_det.mat: malformed-meta"):
        parse_meta_det(b"not a mat file", "meta_det.mat")


def test_read_categories_prefers_map_then_meta(tmp_path):
    data = tmp_path / "devkit" / "data"
    data.mkdir(parents=True)
    with pytest.raises(DataError, match="missing-file"):
        read_categories(str(tmp_path))
    (data / "meta_det.mat").write_bytes(_meta_det_bytes())
    assert len(read_categories(str(tmp_path))) == 2
    (data / "map_det.txt").write_text("n1 1 one\n")
    assert read_categories(str(tmp_path)) == [Category("n1", 1, "one")]
