"""``lsda export``: the ONNX and TorchScript graphs score windows as the torch detector does,
and ``--engine onnxruntime`` keeps the same detections."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from jobs.cli import main
from pipeline.detect.onnx_engine import OnnxDetectors, read_export
from pipeline.detect.scoring import MultiDetector
from pipeline.extract.warp import context_padding, warp_windows
from pipeline.model.checkpoints import save_model
from pipeline.model.export import OPSET, export_detector
from pipeline.model.nets import CategoryMap, get_model
from schemas.config import PostConfig

MEAN = [120.0, 110.0, 100.0]
WNIDS = ("n1", "n2", "n3", "n4")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    url = str(folder / "detector-x.pt")
    save_model(url, get_model("smallcnn", len(WNIDS)), "smallcnn", CategoryMap(WNIDS),
               input_size=32, pixel_mean=MEAN)  # fmt: skip
    return url, export_detector(url)


def _windows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    x1, y1 = rng.integers(0, 80, n), rng.integers(0, 60, n)
    w, h = rng.integers(8, 40, n), rng.integers(8, 30, n)
    boxes = np.stack([x1, y1, np.minimum(x1 + w, 119), np.minimum(y1 + h, 89)], 1)
    boxes = boxes.astype(np.float32)
    return image, boxes, warp_windows(image, boxes, 32, context_padding(32), np.array(MEAN))


def test_exports_score_windows_as_the_detector_does(exported):
    url, manifest = exported
    assert manifest["wnids"] == list(WNIDS) and manifest["opset"] == OPSET
    image, boxes, windows = _windows(300)
    logits = MultiDetector({"x": url}, PostConfig()).logits(image, boxes)["x"]
    expected = (logits[:, :-1] - logits[:, -1:]).numpy()  # each category less the background

    onnx = ort.InferenceSession(manifest["files"]["onnx"]["url"])
    for n in (1, 300):  # the window count is a dynamic axis
        got = onnx.run(["scores"], {"windows": windows[:n]})[0]
        assert got.shape == (n, len(WNIDS))
        assert np.abs(got - expected[:n]).max() < 1e-4
    script = torch.jit.load(manifest["files"]["torchscript"]["url"])
    with torch.no_grad():
        got = script(torch.from_numpy(windows)).numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_onnxruntime_engine_keeps_the_torch_engines_detections(exported):
    url, _ = exported
    post = PostConfig(max_per_class=5)
    torch_engine = MultiDetector({"x": url}, post, rows=["n1", "n3", "n4"])
    onnx_engine = OnnxDetectors({"x": url}, post, rows=["n1", "n3", "n4"])
    assert np.array_equal(onnx_engine.mean, torch_engine.mean)
    for seed in range(3):
        image, boxes, _ = _windows(400, seed)
        (b1, s1, w1), (b2, s2, w2) = torch_engine.score(image, boxes)["x"], \
            onnx_engine.score(image, boxes)["x"]  # fmt: skip
        assert len(w1) == 15 and w1 == w2
        assert np.array_equal(b1, b2) and np.abs(s1 - s2).max() < 1e-4
    image, _, _ = _windows(1)
    boxes, scores, wnids = onnx_engine.score(image, np.zeros((0, 4), np.float32))["x"]
    assert boxes.shape == (0, 4) and len(scores) == 0 and wnids == []


def test_a_stale_or_missing_export_is_named(exported, tmp_path):
    url, manifest = exported
    with pytest.raises(FileNotFoundError, match="lsda export"):
        read_export(str(tmp_path / "detector-none.pt"))
    stale = dict(manifest, source="another")
    side = url.removesuffix(".pt") + ".json"
    original = open(side).read()
    try:
        open(side, "w").write(json.dumps(stale))
        with pytest.raises(ValueError, match="export again"):
            read_export(url)
    finally:
        open(side, "w").write(original)


def test_export_cli_writes_every_format_into_a_folder(exported, tmp_path, capsys):
    url, _ = exported
    out = tmp_path / "out"
    argv = ["export", "--work", str(tmp_path), "--model", url, "--out", str(out),
            "--format", "onnx"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["categories"] == len(WNIDS) and list(printed["files"]) == ["onnx"]
    assert sorted(p.name for p in out.iterdir()) == ["detector-x.json", "detector-x.onnx"]
