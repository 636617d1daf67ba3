"""fsspec URLs everywhere: local paths, ``file://`` and ``s3://`` behave the same.

S3 endpoints: the standard AWS variables are honoured by botocore; ``LSDA_S3_ENDPOINT`` (set by
``lsda --s3-endpoint``) or ``AWS_ENDPOINT_URL`` points s3fs at a non-AWS endpoint such as a
local moto server. Options are passed explicitly so that s3fs's instance cache never hands a
filesystem configured for another endpoint.

Every S3 call is bounded and retried (``s3_client_options``): connect and read timeouts, so a
stalled connection fails in seconds instead of hanging a shard, and botocore's "standard"
retries with back-off for 5xx, throttling, connection resets and timeouts, with s3fs's own
retries for a body cut short. What still fails after that is an error of this run only:
``is_io_error`` tells it from a bug, and the stages keep such an input *pending* (retried by
the next run), never gone. See docs/faults.md.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import re
import stat
import uuid
from collections.abc import Iterable

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from schemas.records import Problem

ENDPOINT_VARS = ("LSDA_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
# The S3 client's bounds, overridable per run (forwarded to Ray workers): seconds to connect,
# seconds a read may wait for the next bytes, and attempts per request.
S3_CLIENT_VARS = {"LSDA_S3_CONNECT_TIMEOUT": 10, "LSDA_S3_READ_TIMEOUT": 30, "LSDA_S3_ATTEMPTS": 8}


def s3_endpoint() -> str | None:
    for var in ENDPOINT_VARS:
        if os.environ.get(var):
            return os.environ[var]
    return None


def storage_options(url: str) -> dict:
    if not url.startswith("s3://"):
        return {}
    # No listings cache: other processes (Ray workers, a re-run) write the files we list, and
    # a cached listing would hide new objects or hand out stale ETags (s3fs: FileExpired).
    options: dict = {"use_listings_cache": False, **s3_client_options()}
    if endpoint := s3_endpoint():
        options["client_kwargs"] = {"endpoint_url": endpoint}
    return options


def _env_number(name: str) -> float:
    value = os.environ.get(name) or S3_CLIENT_VARS[name]
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None


def s3_client_options() -> dict:
    """Timeouts and retries of every S3 request (s3fs options)."""
    attempts = int(_env_number("LSDA_S3_ATTEMPTS"))
    # s3fs adds its own 5 tries around reading a body (cut short, timed out): a class
    # attribute, not an option.
    return {
        "config_kwargs": {
            "connect_timeout": _env_number("LSDA_S3_CONNECT_TIMEOUT"),
            "read_timeout": _env_number("LSDA_S3_READ_TIMEOUT"),
            "retries": {"mode": "standard", "max_attempts": attempts},
        }
    }


# Errors of a storage call that another try may not meet (network, server, throttling), as
# raised by the local disk, s3fs, botocore and aiohttp. Anything else raised while handling
# an input is either a finding about the input (ImageError, DataError) or a bug.
_IO_MODULES = ("botocore", "aiobotocore", "aiohttp", "urllib3", "s3fs", "fsspec")


def is_io_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a storage or network failure (not a bug, not bad data)."""
    if isinstance(exc, OSError):  # TimeoutError and ConnectionError among them
        return True
    return any(type(exc).__module__.startswith(m) for m in _IO_MODULES)


def get_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Filesystem and protocol-less path for ``url``."""
    return url_to_fs(url, **storage_options(url))


def protocol_prefix(url: str) -> str:
    return url.split("://", 1)[0] + "://" if "://" in url else ""


def join(url: str, *parts: str) -> str:
    """Join path parts onto a URL, keeping its protocol."""
    url = url.rstrip("/") or "/"
    return posixpath.join(url, *parts) if parts else url


def absolute(url: str) -> str:
    """A relative local path made absolute: Ray Train workers run in their own directory, so a
    path relative to the driver's would point elsewhere there. URLs pass unchanged."""
    return url if "://" in url else os.path.abspath(url)


def to_url(root_url: str, path: str) -> str:
    """A protocol-less path as returned by fs.find, back to a URL of the same protocol."""
    prefix = protocol_prefix(root_url)
    if prefix == "file://" or not prefix:
        return path if not prefix else prefix + path
    return prefix + path


def relative_to(root: str, url: str) -> str:
    """``url`` as a path under ``root``, for storing: a dataset moved (or mounted elsewhere on
    another machine) keeps its extractions. A URL outside ``root`` (or with no root) stays as
    it is."""
    base = root.rstrip("/") + "/"
    return url[len(base) :] if root and url.startswith(base) else url


def resolve(root: str, url: str) -> str:
    """A stored path back to a URL under ``root`` (see ``relative_to``); absolute paths and URLs,
    as stored by earlier versions or given by a user, pass unchanged."""
    return url if "://" in url or url.startswith("/") else join(root, url)


def stem(url: str) -> str:
    """A file's name without folder and extension: an image's id (ILSVRC names ids so)."""
    return posixpath.splitext(posixpath.basename(url))[0]


def exists(url: str) -> bool:
    fs, path = get_fs(url)
    return fs.exists(path)


def find(url: str, suffixes: Iterable[str] = ()) -> list[str]:
    """All files under ``url`` (one recursive listing, no per-file round trips), as URLs.

    A missing folder yields an empty list; the callers decide whether that is a problem.
    """
    return find_files(url, suffixes)[0]


def find_files(url: str, suffixes: Iterable[str] = ()) -> tuple[list[str], list[Problem]]:
    """``find``, and what could not be followed there: on a local disk, symbolic links are
    read as what they point to (users build ImageNet subsets with ``ln -s`` to class
    folders), a link that leads back to a folder above it is a ``symlink-loop`` and a link
    to nothing a ``broken-link``."""
    fs, path = get_fs(url)
    suffixes = tuple(s.lower() for s in suffixes)
    try:
        found, problems = _walk_local(path) if _is_local(fs) else (fs.find(path), [])
    except FileNotFoundError:
        return [], []
    urls = sorted(to_url(url, p) for p in found if not suffixes or p.lower().endswith(suffixes))
    return urls, [Problem(to_url(url, p.url), p.kind, p.message) for p in problems]


def _is_local(fs) -> bool:
    return isinstance(fs, LocalFileSystem)


def _walk_local(root: str) -> tuple[list[str], list[Problem]]:
    """Every file under ``root``, following links; a folder whose real path is one of its own
    ancestors' is not entered again (a loop)."""
    if not os.path.isdir(root):
        if os.path.exists(root):
            return [root], []
        raise FileNotFoundError(root)
    files, problems = [], []
    stack = [(root, frozenset())]
    while stack:
        folder, ancestors = stack.pop()
        real = os.path.realpath(folder)
        if real in ancestors:
            problems.append(Problem(folder, "symlink-loop", f"leads back to {real}"))
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=True):
                    stack.append((entry.path, ancestors | {real}))
                elif entry.is_file(follow_symlinks=True):
                    files.append(entry.path)
                elif entry.is_symlink():
                    target = os.readlink(entry.path)
                    problems.append(Problem(entry.path, "broken-link", f"points to {target}"))
    return files, problems


def ls(url: str) -> list[dict]:
    """The entries of one folder level with their details (``name``, ``type``, ``size``, and
    ``ETag`` or ``mtime``); a missing folder has none. A local link is described as what it
    points to (a link to nothing stays type ``other``)."""
    fs, path = get_fs(url)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    return [_followed(e) for e in entries] if _is_local(fs) else entries


def _followed(entry: dict) -> dict:
    if not entry.get("islink"):
        return entry
    try:
        st = os.stat(entry["name"])
    except OSError:
        return entry
    kind = (
        "directory" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
    )
    return {**entry, "type": kind, "size": st.st_size, "mtime": st.st_mtime}


_TEMP = re.compile(r"\.tmp-[0-9a-f]{32}$")  # _local_atomic's temporary files


def remove_temp_files(url: str) -> int:
    """Delete the temporary files that writers killed mid-write left under ``url`` (local
    disks only: an object store never shows a partial object); how many there were. Only
    safe while no writer runs there: the work dir's lock holder calls it."""
    fs, path = get_fs(url)
    if not _is_local(fs) or not os.path.isdir(path):
        return 0
    stale = [f for f in _walk_local(path)[0] if _TEMP.search(f)]
    for f in stale:
        os.remove(f)
    return len(stale)


def remove_tree(url: str) -> None:
    """Delete a folder and everything under it (or one file), if it exists."""
    fs, path = get_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def read_bytes(url: str) -> bytes:
    fs, path = get_fs(url)
    return fs.cat_file(path)


def read_text(url: str) -> str:
    return read_bytes(url).decode("utf-8")


def read_many(urls: list[str]) -> dict[str, bytes | Exception]:
    """Fetch many small files at once (s3fs fetches them concurrently); errors are returned."""
    if not urls:
        return {}
    fs, _ = get_fs(urls[0])
    paths = [get_fs(u)[1] for u in urls]
    got = fs.cat(paths, on_error="return")
    return {u: got.get(p, FileNotFoundError(p)) for u, p in zip(urls, paths, strict=True)}


def write_bytes(url: str, data: bytes) -> None:
    """Write atomically: readers never see a half-written file.

    Object stores commit a PUT atomically; on local disks we write a temporary file beside the
    target and rename it.
    """
    fs, path = get_fs(url)
    if _is_local(fs):
        with _local_atomic(path) as f:
            f.write(data)
    else:
        fs.pipe_file(path, data)


@contextlib.contextmanager
def _local_atomic(path: str):
    """A temporary file beside ``path``, renamed to it when complete and removed on any
    error (an interrupt too: no temporary file left behind)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"  # the name remove_temp_files recognises
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def open_atomic(url: str):
    """A binary file to stream into, under its final name only once complete: a temporary
    file renamed on a local disk, a multipart upload completed at the end (aborted on an
    error) on object storage."""
    fs, path = get_fs(url)
    if _is_local(fs):
        with _local_atomic(path) as f:
            yield f
        return
    f = fs.open(path, "wb")
    try:
        yield f
    except BaseException:
        f.discard()  # no object appears
        f.closed = True
        raise
    f.close()


def write_text(url: str, text: str) -> None:
    write_bytes(url, text.encode("utf-8"))


def makedirs(url: str) -> None:
    fs, path = get_fs(url)
    fs.makedirs(path, exist_ok=True)


def write_table(url: str, table, row_group_size: int | None = None) -> None:
    """A pyarrow Table as one Parquet file, committed atomically like write_bytes."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=row_group_size)
    write_bytes(url, buf.getvalue())


def read_table(url: str, columns: list[str] | None = None, filters=None):
    """One Parquet file, or every file of a folder of them, as one table."""
    import pyarrow.parquet as pq

    fs, path = get_fs(url)
    return pq.read_table(path, filesystem=fs, columns=columns, filters=filters)
