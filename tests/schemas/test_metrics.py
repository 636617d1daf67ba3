from schemas.metrics import validate_detector_metrics, validate_report


def test_report_schema():
    row = {"name": "knn-5", "map_trained": 0.5, "map_heldout": 0.4, "map_all": None}
    assert validate_report({"rows": [row]}) == []
    assert validate_report({"rows": [{**row, "map_all": "x"}]}) == ["rows[0]: map_all is str"]
    assert validate_report({}) == ["report: rows is not a list"]


def test_detector_schema_names_what_is_missing():
    problems = validate_detector_metrics({"detector": "x", "categories": [{"wnid": "n1"}]})
    assert "metrics: missing split" in problems and "categories[0]: missing ap" in problems
