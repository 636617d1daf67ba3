"""A tar's member list from its 512-byte headers alone: no member data is read.

``tarfile`` on an s3fs file reads through a read-ahead buffer, so walking the headers of a
tar of ~110 KB JPEGs downloads nearly every byte. Here each header is one 512-byte read at a
known offset (a ranged GET on object storage) and the data between headers is skipped, so
indexing reads ~0.5% of an ImageNet tar. Tars of tiny members (under 8 KB) are read through a
64 KB window instead: fewer requests, and their bytes are few. The formats ImageNet and the
usual tools write are understood: POSIX ustar (with its name prefix), GNU long names
(``L``/``K``) and base-256 sizes, PAX extended headers (``x``, and ``g`` applied to what
follows, as tarfile does).

Unlike ``tarfile``, which lists a member whose data runs past the end of the archive and
stops without a word at a bad header, the scan reports both as problems.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

BLOCK = 512
REGULAR = (b"0", b"\0", b"7")
GNU_LONGNAME, GNU_LONGLINK, PAX_LOCAL, PAX_GLOBAL = b"L", b"K", b"x", b"g"
GNU_SPARSE = b"S"
# Members this small (data + header) are read through a window of READAHEAD bytes that holds
# the next headers too: for tiny files one request per ~60 members beats one per member, and
# their bytes are few. ImageNet's ~110 KB members are far above it: their headers are read alone.
READAHEAD = 64 * 1024
SMALL_MEMBER = READAHEAD // 8
ENCODING, ERRORS = "utf-8", "surrogateescape"  # tarfile's defaults on Linux


@dataclass(frozen=True)
class TarMember:
    name: str
    offset_data: int  # where the member's bytes start in the tar
    size: int
    kind: str  # "file", "dir", "link", "other"


@dataclass
class TarScan:
    members: list[TarMember] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (name, kind, message)
    bytes_read: int = 0


class _Reader:
    """Positional reads that count their bytes, with an optional read-ahead window."""

    def __init__(self, read_at: Callable[[int, int], bytes]):
        self._read_at, self.bytes_read = read_at, 0
        self._buf, self._buf_at = b"", 0

    def __call__(self, offset: int, n: int, ahead: int = 0) -> bytes:
        start = offset - self._buf_at
        if 0 <= start and offset + n <= self._buf_at + len(self._buf):
            return self._buf[start : start + n]
        data = self._read_at(offset, max(n, ahead))
        self.bytes_read += len(data)
        self._buf, self._buf_at = data, offset
        return data[:n]


def _number(field_bytes: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 when the top bit is set."""
    if field_bytes[0] in (0o200, 0o377):
        n = int.from_bytes(field_bytes[1:], "big")
        return n - 256 ** (len(field_bytes) - 1) if field_bytes[0] == 0o377 else n
    text = field_bytes.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _text(field_bytes: bytes) -> str:
    return field_bytes.split(b"\0", 1)[0].decode(ENCODING, ERRORS)


def _checksum_ok(header: bytes) -> bool:
    stored = _number(header[148:156])
    unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])
    signed = sum(b - 256 if b > 127 else b for b in header[:148] + header[156:]) + 8 * 32
    return stored in (unsigned, signed)


def _pax_records(data: bytes) -> dict[str, str]:
    """``"<len> <key>=<value>\\n"`` records."""
    out, pos = {}, 0
    while pos < len(data) and data[pos : pos + 1] not in (b"", b"\0"):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        out[key.decode(ENCODING, ERRORS)] = value.decode(ENCODING, ERRORS)
        pos += length
    return out


def _kind(typeflag: bytes) -> str:
    if typeflag in REGULAR:
        return "file"
    return {b"5": "dir", b"1": "link", b"2": "link"}.get(typeflag, "other")


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def scan_tar(read_at: Callable[[int, int], bytes], tar_size: int) -> TarScan:
    """Every member of a tar of ``tar_size`` bytes, reading headers only."""
    read, scan = _Reader(read_at), TarScan()
    offset, long_name, pax, global_pax = 0, None, {}, {}
    ahead = 0
    while offset + BLOCK <= tar_size:
        header = read(offset, BLOCK, ahead)
        if len(header) < BLOCK:
            scan.problems.append(("", "bad-tar", f"truncated header at offset {offset}"))
            break
        if header == b"\0" * BLOCK:
            break  # end-of-archive marker
        try:
            size = _number(header[124:136]) if _checksum_ok(header) else -1
        except ValueError:  # a numeric field that is not a number
            size = -1
        if size < 0:
            scan.problems.append(("", "bad-tar", f"invalid header at offset {offset}"))
            break
        typeflag = header[156:157]
        data_at = offset + BLOCK
        offset = data_at + _padded(size)
        ahead = READAHEAD if _padded(size) + BLOCK <= SMALL_MEMBER else 0
        if typeflag in (GNU_LONGNAME, GNU_LONGLINK, PAX_LOCAL, PAX_GLOBAL):
            payload = read(data_at, size)
            if typeflag == GNU_LONGNAME:
                long_name = payload.split(b"\0", 1)[0].decode(ENCODING, ERRORS)
            elif typeflag == PAX_LOCAL:
                pax = _pax_records(payload)
            elif typeflag == PAX_GLOBAL:
                global_pax.update(_pax_records(payload))
            continue
        name = _text(header[0:100])
        if header[257:263] == b"ustar\0" and (prefix := _text(header[345:500])):
            name = f"{prefix}/{name}"
        fields = {**global_pax, **pax}
        name = fields.get("path", long_name or name)
        if "size" in fields:
            size = int(fields["size"])
            offset = data_at + _padded(size)
        long_name, pax = None, {}
        kind = "dir" if typeflag == b"\0" and name.endswith("/") else _kind(typeflag)
        if typeflag == GNU_SPARSE:
            scan.problems.append((name, "bad-tar", "sparse member not supported"))
        elif data_at + size > tar_size:
            scan.problems.append((name, "truncated-tar-member", f"data ends past {tar_size} B"))
        else:
            name = name.rstrip("/") if kind == "dir" else name
            scan.members.append(TarMember(name, data_at, size, kind))
    scan.bytes_read = read.bytes_read
    return scan
