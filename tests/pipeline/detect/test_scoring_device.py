"""Device handling of ``detect --gpus`` and ``score-vocab --gpus``, on CPU.

On a GPU actor the image goes to the device once, windows are cut out and scored there, and
the scores stay there through NMS. Two checks stand in for a GPU: the window feeder and the
network run with ``meta`` as the device (a meta tensor mixed with a CPU tensor raises, as a
CUDA one does), and post-processing is run under a mode that fails on any tensor our code
creates on the default device instead of its inputs' (where a CUDA run would mix devices).
"""

import argparse
import sys

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from jobs import detect as detect_job
from pipeline.detect.fanout import actor_count
from pipeline.detect.postprocess import detections
from pipeline.detect.scoring import MultiDetector, WindowFeeder, scoring_device
from pipeline.detect.vocab import VocabScorer
from pipeline.model.checkpoints import save_model
from pipeline.model.nets import CategoryMap, get_model
from schemas.config import PostConfig, ScoringConfig, VocabPostConfig

MEAN = [120.0, 110.0, 100.0]
FACTORIES = {torch.arange, torch.zeros, torch.ones, torch.full, torch.empty, torch.tensor}


class DefaultDeviceTensors(TorchFunctionMode):
    """Records factory calls without ``device=`` made from the project's own code."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and "device" not in kwargs:
            frame = sys._getframe(1)
            while frame and "/torch/" in frame.f_code.co_filename:
                frame = frame.f_back
            if frame and "/pipeline/" in frame.f_code.co_filename:
                self.calls.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {func.__name__}")
        return func(*args, **kwargs)


def _image_and_boxes(n: int = 40):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    x1, y1 = rng.integers(0, 60, n), rng.integers(0, 40, n)
    boxes = np.stack([x1, y1, x1 + rng.integers(4, 20, n), y1 + rng.integers(4, 20, n)], 1)
    return image, boxes.astype(np.float32)


@pytest.mark.parametrize("warp", ["torch", "cv2"])
def test_windows_and_the_network_run_on_the_scoring_device(warp):
    meta = torch.device("meta")
    feeder = WindowFeeder(32, MEAN, ScoringConfig(warp=warp, windows_per_batch=16), meta)
    model = feeder.prepare(get_model("smallcnn", 5))
    image, boxes = _image_and_boxes()
    batches = list(feeder.batches(image, boxes))
    assert [b.shape[0] for b in batches] == [16, 16, 8]
    for x in batches:
        assert x.device == meta
        with feeder.autocast():
            assert model(x).device == meta


def test_post_processing_creates_its_tensors_on_its_inputs_device():
    image, boxes = _image_and_boxes(300)
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(300, 6, generator=g)
    boxes_t = torch.from_numpy(boxes)
    feats, weight, bias = torch.randn(300, 16), torch.randn(7, 16), torch.randn(7)
    with DefaultDeviceTensors() as mode:
        detections(boxes_t, scores, PostConfig(max_per_class=2))  # both NMS passes
        detections(boxes_t[:0], scores[:0], PostConfig())
        cfg = VocabPostConfig(score_threshold=-1.0, chunk=4)
        VocabScorer(weight, bias, cfg, [(0, 0), (1, 0), (2, 1)], 2).detect(feats, boxes_t)
        VocabScorer(weight, bias, cfg).detect(feats[:0], boxes_t[:0])
    assert mode.calls == []


def _detectors(tmp_path, n: int = 2) -> dict[str, str]:
    categories = CategoryMap(("n1", "n2", "n3"))
    urls = {}
    for i in range(n):
        torch.manual_seed(i)
        url = str(tmp_path / f"d{i}.pt")
        model = get_model("smallcnn", 3)
        save_model(url, model, "smallcnn", categories, input_size=32, pixel_mean=MEAN)
        urls[f"d{i}"] = url
    return urls


@pytest.mark.parametrize(
    "scoring,tolerance",
    [(ScoringConfig(warp="torch"), 0.05), (ScoringConfig(precision="bf16"), 0.1)],
)
def test_torch_warp_and_bf16_score_like_the_default(tmp_path, scoring, tolerance):
    urls = _detectors(tmp_path)
    image, boxes = _image_and_boxes()
    want = MultiDetector(urls, PostConfig()).logits(image, boxes)
    got = MultiDetector(urls, PostConfig(), scoring=scoring).logits(image, boxes)
    for name in urls:
        assert got[name].dtype == torch.float32
        assert (got[name] - want[name]).abs().max() < tolerance * want[name].abs().max()


@pytest.mark.skipif(torch.cuda.is_available(), reason="expected: checks the message without CUDA")
def test_gpus_without_cuda_names_the_problem():
    with pytest.raises(RuntimeError, match="no CUDA device"):
        scoring_device(ScoringConfig(gpus=True))


def test_one_actor_per_gpu_and_none_without(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 2.0})
    assert actor_count(8, 100, gpus=True) == 2
    assert actor_count(8, 100, gpus=False) == 8
    assert actor_count(8, 1, gpus=True) == 1
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0})
    with pytest.raises(RuntimeError, match="no GPU"):
        actor_count(8, 100, gpus=True)


def test_detect_takes_the_device_and_proposal_settings_from_its_config(tmp_path):
    p = argparse.ArgumentParser()
    detect_job.add_arguments(p)
    common = ["--data", "d", "--work", str(tmp_path), "--model", "m"]
    args = p.parse_args([*common, "--split", "val2", "--gpus", "--precision", "bf16"])
    scoring, _ = detect_job.scoring_from_args(args)
    assert scoring == ScoringConfig(gpus=True, precision="bf16")
    args = p.parse_args([*common, "--images", "x/*.jpg", "--config", "configs/toyworld.yaml"])
    scoring, proposals = detect_job.scoring_from_args(args)
    assert (proposals.resize_width, proposals.min_box, proposals.window_size) == (0, 8, 32)
    assert scoring == ScoringConfig()
    args = p.parse_args([*common, "--images", "x/*.jpg"])  # nothing says how to propose
    with pytest.raises(ValueError, match="proposal settings"):
        detect_job.scoring_from_args(args)


def test_scoring_an_image_waits_for_the_device_a_handful_of_times(tmp_path):
    """On a GPU the host waits for the device only where a size must be known: per NMS pass,
    which windows pass the threshold (``nonzero``) and NMS itself (inside torchvision, not
    seen here); whether a second pass is needed; and the one copy of the detections back. At
    most 5 in all, with the GPU's path (torch warp, the image and boxes copied once)."""
    from pipeline.model.host_syncs import HostSyncCounter

    urls = _detectors(tmp_path, 1)
    det = MultiDetector(urls, PostConfig(), scoring=ScoringConfig(warp="torch"))
    image, boxes = _image_and_boxes(300)
    det.score(image, boxes)
    with HostSyncCounter() as syncs:
        (found,) = det.score(image, boxes).values()
    passes = syncs.counts["read:nonzero"]
    assert len(found[1]) > 0 and passes >= 1
    assert syncs.total + passes <= 5, syncs.counts  # + each pass's NMS
