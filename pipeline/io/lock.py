"""One driver per work dir: ``WORK/_lock.json`` names its holder (host, pid, command, since).

Two drivers writing one work dir would race on its markers and parts, and an ``--overwrite``
of one would delete under the other. A second ``lsda`` is refused with one line naming the
holder (``WorkDirBusy``); a lock left by a driver that died is taken over.

- **Local disk**: an exclusive ``flock`` on the file, held for the driver's life. The kernel
  drops it when the process dies, however it dies (SIGKILL included), so a dead driver's lock
  is free at once; its record is still in the file, and the taker says whose it was.
- **S3**: a lease object. It is created with a conditional PUT (``If-None-Match: *``), renewed
  every ``TTL_S / 4`` seconds by a heartbeat thread (``If-Match`` its own ETag), and taken over
  when its last renewal (the object's ``LastModified``, the store's clock, to the second) is
  older than ``TTL_S``, again with ``If-Match``, so that of two takers one wins. A holder
  whose renewal fails because another driver took the lease over stops itself (the main
  thread gets a KeyboardInterrupt): it has lost the right to write.
"""

from __future__ import annotations

import _thread
import datetime
import fcntl
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass

from pipeline.io import storage

LOCK_NAME = "_lock.json"
TTL_S = float(os.environ.get("LSDA_LOCK_TTL_S", 120))


class WorkDirBusy(RuntimeError):
    """Another live driver holds the work dir."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def holder_record(command: str) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "command": command, "since": _now()}


def describe(record: dict) -> str:
    return (
        f"`lsda {record.get('command', '?')}` (pid {record.get('pid', '?')} on "
        f"{record.get('host', '?')}, since {record.get('since', '?')})"
    )


def _busy(work: str, record: dict) -> WorkDirBusy:
    return WorkDirBusy(
        f"{work} is in use by {describe(record)}; wait for it to finish, or stop it "
        "(lsda jobs stop, or kill that pid) and run again"
    )


@dataclass
class WorkLock:
    """``with WorkLock(work, "extract") as lock:``; ``lock.previous`` is the record of a dead
    holder whose lock was taken over (None if the lock was free)."""

    work: str
    command: str
    previous: dict | None = None

    def __post_init__(self) -> None:
        self.url = storage.join(self.work, LOCK_NAME)
        self.record = holder_record(self.command)
        self._fd: int | None = None
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WorkLock:
        if self.url.startswith("s3://"):
            self._acquire_lease()
        else:
            storage.makedirs(self.work)  # (on S3 this could create a bucket: not there)
            self._acquire_flock()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # local disk ---------------------------------------------------------------------------
    def _acquire_flock(self) -> None:
        path = storage.get_fs(self.url)[1]
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = _parse(os.pread(fd, 65536, 0))
            os.close(fd)
            raise _busy(self.work, record) from None
        self.previous = _parse(os.pread(fd, 65536, 0)) or None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self.record).encode(), 0)
        self._fd = fd

    # object storage -----------------------------------------------------------------------
    def _put(self, body: bytes, **condition) -> None:
        """A conditional PUT of the lease (``IfNoneMatch`` / ``IfMatch``); keeps its ETag."""
        self._etag = self._fs.call_s3(
            "put_object", Bucket=self._bucket, Key=self._key, Body=body, **condition
        )["ETag"]

    def _acquire_lease(self) -> None:
        self._fs, path = storage.get_fs(self.url)
        self._bucket, self._key = path.split("/", 1)
        body = json.dumps(self.record).encode()
        try:
            self._put(body, IfNoneMatch="*")
        except FileExistsError:
            self._take_over_lease(path, body)
        self._thread = threading.Thread(target=self._renew, name="lsda-lock", daemon=True)
        self._thread.start()

    def _take_over_lease(self, path: str, body: bytes) -> None:
        info = self._fs.info(path, refresh=True)
        record = _parse(self._fs.cat_file(path))
        if time.time() - info["LastModified"].timestamp() <= TTL_S:
            raise _busy(self.work, record)
        try:
            self._put(body, IfMatch=info["ETag"])
        except OSError:  # another driver took it over first
            raise _busy(self.work, _parse(self._fs.cat_file(path))) from None
        self.previous = record

    def _renew(self) -> None:
        while not self._stop.wait(TTL_S / 4):
            try:
                self._put(
                    json.dumps({**self.record, "renewed": _now()}).encode(), IfMatch=self._etag
                )
            except Exception as exc:  # lost (taken over after a stall) or unreachable
                print(
                    f"lsda: lost the lock of {self.work} ({type(exc).__name__}: {exc}); stopping",
                    file=sys.stderr,
                    flush=True,
                )
                self._etag = None
                _thread.interrupt_main()
                return

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # no record left: the next driver takes a free lock
            os.close(self._fd)  # closing drops the flock
            self._fd = None
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            self._thread = None
            if self._etag:
                try:
                    self._fs.call_s3(
                        "delete_object", Bucket=self._bucket, Key=self._key, IfMatch=self._etag
                    )
                except OSError:
                    pass  # taken over meanwhile: it is not ours to delete
                self._etag = None


def _parse(data: bytes) -> dict:
    try:
        return json.loads(data.decode() or "{}")
    except ValueError:
        return {}
