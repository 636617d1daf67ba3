"""The header-only tar scan lists exactly what ``tarfile`` lists, and reads only headers."""

import io
import tarfile

import pytest

from pipeline.data.cls_reader import tar_entries
from pipeline.data.tar_index import BLOCK, scan_tar


def _tar(members: dict[str, bytes], fmt=tarfile.GNU_FORMAT, dirs=()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            t.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _scan(data: bytes):
    return scan_tar(lambda offset, n: data[offset : offset + n], len(data))


def _tarfile_members(data: bytes) -> list[tuple[str, int, int]]:
    """What tarfile lists before it stops (it raises at a member cut short)."""
    listed = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
            for m in t:
                listed.append((m.name, m.offset_data, m.size))
    except tarfile.ReadError:
        pass
    return listed


LONG = "n01440764/" + "deep/" * 30 + "n01440764_" + "9" * 80 + ".JPEG"
CASES = {
    "gnu long names": _tar({LONG: b"a" * 700, "n01_2.JPEG": b"b"}, tarfile.GNU_FORMAT),
    "pax long names": _tar({LONG: b"a" * 700, "é_ü.JPEG": b"c" * 3}, tarfile.PAX_FORMAT),
    "ustar prefix": _tar({"p" * 90 + "/" + "q" * 90 + ".JPEG": b"d"}, tarfile.USTAR_FORMAT),
    "empty members": _tar({"empty.JPEG": b"", "n01_3.JPEG": b"x" * 513, "zero.JPEG": b""}),
    "non-jpeg and dirs": _tar({"sub/readme.txt": b"hi", "sub/a.JPEG": b"e"}, dirs=("sub",)),
    "unsafe member": _tar({"../evil.JPEG": b"x", "/abs.JPEG": b"y", "ok.JPEG": b"z"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_scan_equals_tarfile(case):
    data = CASES[case]
    scan = _scan(data)
    assert [(m.name, m.offset_data, m.size) for m in scan.members] == _tarfile_members(data)
    assert scan.problems == []


def test_a_truncated_tar_lists_what_tarfile_lists_and_flags_the_cut_member():
    whole = _tar({"a.JPEG": b"a" * 2000, "b.JPEG": b"b" * 5000})
    cut = whole[: len(whole) - 2 * BLOCK - 3000]  # b.JPEG's data is cut short
    scan = _scan(cut)
    listed = [(m.name, m.offset_data, m.size) for m in scan.members]
    flagged = [(name, kind) for name, kind, _ in scan.problems]
    assert listed + [("b.JPEG", BLOCK + 2048 + BLOCK, 5000)] == _tarfile_members(cut)
    assert flagged == [("b.JPEG", "truncated-tar-member")]


def test_a_bad_header_after_good_members_is_reported_not_silent():
    data = bytearray(_tar({"a.JPEG": b"a" * 100, "b.JPEG": b"b"}))
    data[2 * BLOCK + 10] ^= 0xFF  # b.JPEG's header no longer matches its checksum
    scan = _scan(bytes(data))
    assert [m.name for m in scan.members] == ["a.JPEG"] == [n for n, *_ in _tarfile_members(data)]
    assert [kind for _, kind, _ in scan.problems] == ["bad-tar"]


def test_only_headers_are_read():
    members = {f"n01_{i}.JPEG": bytes(100_000) for i in range(20)}
    data = _tar(members)
    scan = _scan(data)
    assert len(scan.members) == 20
    assert scan.bytes_read == (20 + 1) * BLOCK  # one header per member and the end marker
    assert scan.bytes_read / len(data) < 0.02


def test_tiny_members_are_read_through_a_window_not_one_request_each():
    data = _tar({f"n01_{i}.JPEG": b"x" * 300 for i in range(200)})
    requests = []

    def read_at(offset, n):
        requests.append(n)
        return data[offset : offset + n]

    scan = scan_tar(read_at, len(data))
    assert len(scan.members) == 200 and len(requests) < 200 / 20


def test_tar_entries_reads_a_file_by_ranges(tmp_path):
    path = tmp_path / "n09.tar"
    path.write_bytes(CASES["non-jpeg and dirs"])
    index, bytes_read = tar_entries(str(path), "n09")
    assert [(i.wnid, i.name) for i in index.images] == [("n09", "a")]
    assert [p.kind for p in index.problems] == ["unexpected-file"]
    assert 0 < bytes_read <= path.stat().st_size
