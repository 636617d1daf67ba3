import pytest

from pipeline.data.splits import parse_split, read_split
from schemas.records import DataError


def test_one_and_two_columns():
    assert parse_split("a\nb.JPEG\n", "s") == ["a", "b"]
    text = "ILSVRC2013_val_00000001 1\nILSVRC2013_val_00000002 2\n"
    assert parse_split(text, "s") == ["ILSVRC2013_val_00000001", "ILSVRC2013_val_00000002"]


@pytest.mark.parametrize("text, kind", [("", "empty-split"), ("a b c\n", "malformed-split")])
def test_bad_split_files(text, kind):
    with pytest.raises(DataError) as err:
        parse_split(text, "devkit/data/val1.txt")
    assert err.value.problem.kind == kind and "val1.txt" in str(err.value)


def test_missing_split_file(tmp_path):
    with pytest.raises(DataError, match="val2.txt.*missing-file"):
        read_split(str(tmp_path), "val2")
