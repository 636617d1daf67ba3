"""The work dir's lock: refused while held, free when released, taken over when dead."""

import json
import time

import pytest

from pipeline.io import lock as work_lock
from pipeline.io import storage
from pipeline.io.lock import WorkDirBusy, WorkLock


def test_local_lock_refuses_a_second_holder_and_frees_on_release(tmp_path):
    work = str(tmp_path / "w")
    with WorkLock(work, "extract") as first:
        assert first.previous is None
        with pytest.raises(WorkDirBusy, match=r"in use by `lsda extract` \(pid \d+ on "):
            WorkLock(work, "run").__enter__()
    with WorkLock(work, "run") as again:  # released: free, and no dead holder to name
        assert again.previous is None


def test_local_lock_of_a_dead_holder_is_taken_over(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    dead = {"host": "h", "pid": 999999, "command": "train-det", "since": "then"}
    (work / "_lock.json").write_text(json.dumps(dead))  # a record, and no flock on it
    with WorkLock(str(work), "run") as lock:
        assert lock.previous == dead


def test_s3_lease_refuses_renews_and_is_taken_over_when_expired(s3_bucket, monkeypatch):
    # S3's LastModified has a resolution of one second: a lease far shorter would look
    # expired the moment it was written
    monkeypatch.setattr(work_lock, "TTL_S", 3.0)
    work = f"{s3_bucket}/w"
    url = f"{work}/_lock.json"
    first = WorkLock(work, "extract").__enter__()
    with pytest.raises(WorkDirBusy, match="in use by `lsda extract`"):
        WorkLock(work, "run").__enter__()
    time.sleep(4.0)  # renewed every 0.75 s: still held
    with pytest.raises(WorkDirBusy):
        WorkLock(work, "run").__enter__()
    assert "renewed" in json.loads(storage.read_text(url))
    first._stop.set()  # the holder dies without releasing: its lease runs out
    first._thread.join()
    time.sleep(4.5)
    with WorkLock(work, "run") as taker:
        assert taker.previous["command"] == "extract"
    assert not storage.exists(url)  # released
    first.release()  # the old holder's late release does not delete the new one's lease
