from pipeline import lineage


def test_an_artifact_is_current_only_with_its_own_inputs(tmp_path, capsys):
    url = str(tmp_path / "models/det.pt")
    inputs = {"cls": "ab12", "config": {"lr": 0.001, "iterations": 600}}
    assert not lineage.is_current(url, inputs, "train-det")  # nothing there: no line
    (tmp_path / "models").mkdir()
    (tmp_path / "models/det.pt").write_bytes(b"model")
    assert not lineage.is_current(url, inputs, "train-det")  # there, but no record
    assert capsys.readouterr().out.endswith("its inputs changed (no record)\n")
    lineage.record(url, inputs)
    assert lineage.is_current(url, inputs, "train-det")
    changed = {"cls": "ab12", "config": {"lr": 0.01, "iterations": 600}}
    assert lineage.changed(url, changed) == ["config.lr"]
    assert lineage.changed(url, {**inputs, "cls": "cd34"}) == ["cls"]
    assert lineage.of(url) == lineage.fingerprint(inputs) != lineage.of(str(tmp_path / "x"))
    assert not lineage.is_current(url, changed, "train-det")
    assert "train-det: redoing" in capsys.readouterr().out
    assert lineage.recorded(url) is None  # forgotten until the redo records its own


def test_a_run_resumes_for_a_longer_fit_of_the_same_settings_only(tmp_path):
    from pipeline.train.trainer import _resumable

    run = str(tmp_path / "train/det-x")
    inputs = {"cls": "ab12", "config": {"lr": 0.001, "iterations": 600}}
    lineage.record(run, inputs)
    assert _resumable(run, inputs)
    assert _resumable(run, {"cls": "ab12", "config": {"lr": 0.001, "iterations": 900}})
    assert not _resumable(run, {"cls": "ab12", "config": {"lr": 0.001, "iterations": 300}})
    assert not _resumable(run, {"cls": "ab12", "config": {"lr": 0.01, "iterations": 900}})
    assert not _resumable(run, {"cls": "cd34", "config": {"lr": 0.001, "iterations": 600}})
