import shutil
import subprocess
import sys

from jobs.cli import STAGES, main


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
