import pytest

from pipeline.failures import StageFailed, check_bad_share, failure_message


def test_the_bad_share_limit():
    check_bad_share("extract val", 5, 100, 0.05, "here")  # at the limit: fine
    check_bad_share("extract val", 0, 0, 0.05, "here")  # nothing to do: fine
    with pytest.raises(StageFailed, match=r"6 of 100 inputs quarantined \(6.0% > limit 5%"):
        check_bad_share("extract val", 6, 100, 0.05, "here")
    with pytest.raises(StageFailed, match="3 of 3"):  # all bad fails whatever the limit
        check_bad_share("extract val", 3, 3, 1.0, "here")


class Marked(RuntimeError):
    pass


def test_a_failure_is_found_in_the_chain_or_in_a_flattened_remote_text():
    try:
        try:
            raise Marked("shard 3 failed")
        except Marked as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert failure_message(outer, Marked) == "shard 3 failed"
    flattened = RuntimeError("ray::Map()\n  File x\ntests.Marked: shard 4 failed on a.JPEG\n")
    assert failure_message(flattened, Marked) == "shard 4 failed on a.JPEG"
    assert failure_message(RuntimeError("other"), Marked) is None
