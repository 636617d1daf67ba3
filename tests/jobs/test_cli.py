import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.cli import STAGES, main
from jobs.common import run_stage
from pipeline.failures import StageFailed


def test_help_lists_every_stage(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert all(stage in out for stage in STAGES)


def test_check_data_clean_and_broken(tiny_world, tmp_path, capsys):
    assert main(["check-data", tiny_world]) == 0
    assert "problems: 0" in capsys.readouterr().out
    broken = tmp_path / "broken"
    shutil.copytree(tiny_world, broken)
    xml = next((broken / "ILSVRC2013_DET_bbox_val").glob("*.xml"))
    xml.write_text("<annotation><size>")
    assert main(["check-data", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "malformed-xml: 1" in out and xml.name in out


def test_stage_runs_as_a_module(tmp_path):
    """The form a Ray job submission uses: python -m jobs.<stage>."""
    out = tmp_path / "w"
    cmd = [
        sys.executable,
        "-m",
        "jobs.toyworld",
        "--out",
        str(out),
        "--size",
        "test",
        "--det-categories",
        "4",
        "--leaf-categories",
        "0",
        "--workers",
        "1",
        "--no-progress",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '"detection_categories": 4' in done.stdout
    assert (out / "devkit/data/map_det.txt").read_text().count("\n") == 4


def test_local_paths_become_absolute_urls_stay(monkeypatch, tmp_path):
    """Ray Train workers run in their own directory: a relative --work would point elsewhere."""
    import argparse

    from jobs.common import apply_common

    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(data="data", work="s3://bucket/work", out="./out")
    apply_common(args)
    assert (args.data, args.work, args.out) == (
        str(tmp_path / "data"),
        "s3://bucket/work",
        str(tmp_path / "out"),
    )


def test_a_user_error_is_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch):
    """No map_det.txt: the message names the file, no traceback, and Ray never starts."""
    import ray

    def no_ray():
        raise AssertionError("a stage reached Ray before the input was checked")

    monkeypatch.setattr(ray, "is_initialized", no_ray)  # every stage asks first (ensure_ray)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", "--data", str(empty), "--work", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "map_det.txt" in err[0] and err[0].startswith("lsda run: error:")
    assert main(["run", "--data", str(empty), "--work", "w", "--config", "nosuch"]) == 2
    assert "no config named 'nosuch'" in capsys.readouterr().err


def test_an_installed_lsda_works_from_any_directory(tmp_path, tiny_world):
    """``pip install .`` (a wheel, not the checkout) run from another directory: the shipped
    configs are found by name, and user errors stay one line."""
    root = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"
    for name in ("pipeline", "jobs", "schemas", "configs"):
        shutil.copytree(root / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(site), str(src)], check=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}

    def lsda(*argv: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "jobs.cli", *argv]
        return subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True)

    where = subprocess.run(
        [sys.executable, "-c", "import pipeline, configs; print(pipeline.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(site))
    assert lsda("run", "--help").returncode == 0
    done = lsda("check-data", tiny_world)
    assert done.returncode == 0 and "problems: 0" in done.stdout, done.stderr
    failed = lsda("run", "--data", str(elsewhere), "--work", str(tmp_path / "w"))
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.count("\n") == 1 and "map_det.txt" in failed.stderr


def test_every_stage_takes_a_config():
    """The stages that read settings take ``--config`` (a name or a path) and one flag per
    field of the sections they use."""
    import argparse
    import importlib

    from jobs.cli import STAGES

    skip = {"toyworld", "check-data", "submit", "jobs", "export"}  # no settings of a config file
    for name, module in STAGES.items():
        if name in skip:
            continue
        parser = argparse.ArgumentParser()
        importlib.import_module(module).add_arguments(parser)
        flags = {a for action in parser._actions for a in action.option_strings}
        assert "--config" in flags, name


def test_a_failed_stage_is_one_line_and_exit_1_and_a_bug_a_traceback(capsys):
    def failing(exc):
        def run(args):
            raise exc

        return run

    args = argparse.Namespace()
    assert run_stage("extract", args, failing(StageFailed("extract val: 9 of 9 bad"))) == 1
    assert run_stage("extract", args, failing(ConnectionResetError("reset by peer"))) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "lsda extract: error: extract val: 9 of 9 bad (--debug for the traceback)"
    assert lines[1].startswith("lsda extract: error: reset by peer (storage error: nothing lost")
    with pytest.raises(TypeError):
        run_stage("extract", args, failing(TypeError("a bug")))
