"""Stopping a real ``lsda`` driver: SIGINT and SIGTERM stop it within 30 s with one line and
exit 130 / 143; SIGKILL leaves a work dir that the same command finishes (its lock taken over,
temporary files removed); a second driver on a held work dir is refused.

A test hook (``LSDA_TEST_HOLD_FROM_SHARD``) holds every shard from the N-th on, so the signal
always meets a run with exactly N shards done: the test waits for their markers, not a time.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.extract.stage import read_manifest, run_extract
from schemas.config import load_config
from tests.conftest import stop_and_time, stop_group

STOP_WITHIN_S = 30


def extract_cmd(data: str, work: Path) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", "extract", "--data", data, "--work", str(work),
            "--split", "val", "--config", "configs/toyworld.yaml", "--shard-size", "1",
            "--workers", "1", "--no-progress"]  # fmt: skip


def start(cmd: list[str], hold_from: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": ""}
    if hold_from is not None:
        env["LSDA_TEST_HOLD_FROM_SHARD"] = str(hold_from)
    # its own process group: what it started (its local Ray) is stopped with it at the end
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def wait_for_markers(
    work: Path, n: int, proc: subprocess.Popen, timeout_s: float = 240, split: str = "val"
) -> None:
    markers = work / "extract" / split / "_done"
    deadline = time.monotonic() + timeout_s
    while len(list(markers.glob("*.json"))) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{n} shards not done in {timeout_s} s"
        time.sleep(0.1)


def temp_files(work: Path) -> list[Path]:
    return [p for p in work.rglob("*") if ".tmp-" in p.name]


def finish(cmd: list[str], work: Path) -> tuple[dict, str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RAY_ADDRESS": ""})  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ids = read_manifest(str(work / "extract/val")).column("image_id").to_pylist()
    assert len(ids) == len(set(ids)) == 16  # every input exactly once
    assert temp_files(work) == []
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_extract_stopped_by_sigint_sigterm_and_sigkill_is_finished_by_the_same_command(
    tiny_world, tmp_path
):
    """One extraction, stopped three ways: SIGINT once 3 shards are done; the same command
    again, SIGTERM once 6 are (meanwhile a second driver on the same work dir is refused);
    again, SIGKILL once 9 are (no handler, no clean-up: its lock and a half-written file stay).
    The same command then takes the lock over, removes the temporary file and does the rest."""
    work = tmp_path / "work"
    cmd = extract_cmd(tiny_world, work)
    took = {}
    for sig, done in ((signal.SIGINT, 3), (signal.SIGTERM, 6)):
        proc = start(cmd, hold_from=done)
        try:
            wait_for_markers(work, done, proc)
            if sig == signal.SIGTERM:
                other = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                assert other.returncode == 2
                assert f"is in use by `lsda extract` (pid {proc.pid} on" in other.stderr
                assert len(other.stderr.strip().splitlines()) == 1
            took[sig.name], err = stop_and_time(proc, sig)
        finally:
            stop_group(proc)
        assert proc.returncode == 128 + sig, err
        assert err.strip().splitlines()[-1].startswith(f"lsda extract: stopped by {sig.name}")
        assert len(list((work / "extract/val/_done").glob("*.json"))) == done
        assert not (work / "extract/val/_SUCCESS").exists() and temp_files(work) == []
    print("extract stopped in", {k: f"{v:.1f} s" for k, v in took.items()})
    assert max(took.values()) < STOP_WITHIN_S
    proc = start(cmd, hold_from=9)
    try:
        wait_for_markers(work, 9, proc)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        stop_group(proc)
    lock = json.loads((work / "_lock.json").read_text())
    assert lock["pid"] == proc.pid  # the dead driver's record is still there
    # what a writer killed mid-write leaves
    half = work / f"extract/val/proposals/part-00012.parquet.tmp-{'0' * 32}"
    half.write_bytes(b"half")
    summary, err = finish(cmd, work)
    assert summary["resumed_shards"] == 9 and summary["done"] == 16
    assert f"took over the lock of `lsda extract` (pid {proc.pid} on" in err
    assert "1 temporary files it left removed" in err


def wait_for_line(proc: subprocess.Popen, text: str, timeout_s: float = 300) -> list[str]:
    """The driver's stdout lines up to the first holding ``text`` (a point of its progress,
    not a time)."""
    lines, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if not ready:
            assert proc.poll() is None, "".join(lines) + proc.stderr.read()
            continue
        line = proc.stdout.readline()
        assert line, "".join(lines) + proc.stderr.read()  # it exited first
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} in {timeout_s} s: {''.join(lines)}")


def test_a_signal_stops_training_and_run(tiny_world, tmp_path, ray_local):
    """SIGTERM after train-cls's first epoch; SIGINT to `lsda run` during its extraction.
    (The classification shards train-cls reads are extracted here, in the session's Ray.)"""
    work = tmp_path / "work"
    config = ["--config", "configs/toyworld.yaml"]
    extract = load_config("configs/toyworld.yaml").extract
    run_extract(tiny_world, str(work), "cls", extract, progress=False)
    train = [sys.executable, "-m", "jobs.cli", "train-cls", "--data", tiny_world, "--work",
             str(work), *config, "--epochs", "200", "--workers", "1"]  # fmt: skip
    proc = start(train)
    try:
        wait_for_line(proc, "train-cls epoch 1/200")
        took_train, err = stop_and_time(proc, signal.SIGTERM)
    finally:
        stop_group(proc)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("lsda train-cls: stopped by SIGTERM")
    assert not (work / "models/cls.pt").exists() and temp_files(work) == []
    run = [sys.executable, "-m", "jobs.cli", "run", "--data", tiny_world, "--work",
           str(tmp_path / "run"), *config, "--quick", "--no-progress"]  # fmt: skip
    proc = start(run, hold_from=1)
    try:
        wait_for_markers(tmp_path / "run", 1, proc, split="cls")
        took_run, err = stop_and_time(proc, signal.SIGINT)
    finally:
        stop_group(proc)
    print(f"SIGTERM: train-cls stopped in {took_train:.1f} s; SIGINT: run in {took_run:.1f} s")
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("lsda run: stopped by SIGINT")
    assert max(took_train, took_run) < STOP_WITHIN_S
