from pipeline.workdir import WorkDir, ablation_models, knn_name, model_file


def test_every_artifact_lives_under_the_work_dir():
    wd = WorkDir("s3://bucket/work")
    paths = [
        wd.extract("val1"),
        wd.extract("val1", oracle=True),
        wd.train_run("det-all-fcB"),
        wd.classifier(),
        wd.finetuned("bg"),
        wd.adapted("knn-3"),
        wd.neighbours("knn-3"),
        wd.detections("knn-3", "val2"),
        wd.evaluation("knn-3", "val2"),
        wd.report(),
    ]
    assert all(p.startswith("s3://bucket/work/") for p in paths)
    assert len(set(paths)) == len(paths)
    assert wd.extract("val1", oracle=True) == "s3://bucket/work/extract/val1-oracle"


def test_model_names_resolve_alike():
    assert model_file("knn-5") == model_file("detector-knn-5") == "detector-knn-5.pt"
    assert model_file("cls") == "cls.pt" and model_file("det-bg") == "det-bg.pt"
    assert WorkDir("/w").model("mine.pt") == "/w/models/mine.pt"


def test_the_ablation_rows_follow_k():
    rows = ablation_models(3)
    assert list(rows) == [
        "classifier",
        "bg-only",
        "all-layers",
        knn_name(3),
        "avg-offset",
        "oracle",
    ]
    assert rows["knn-3"] == "detector-knn-3" and rows["all-layers"] == "det-all-fcB"
