import numpy as np
import torch

from pipeline.detect.scoring import MultiDetector
from pipeline.extract.warp import context_padding, warp_windows
from pipeline.model.checkpoints import save_model
from pipeline.model.nets import CategoryMap, get_model
from schemas.config import PostConfig

MEAN = [120.0, 110.0, 100.0]


def _save(tmp_path, name, model, categories):
    url = str(tmp_path / f"{name}.pt")
    save_model(url, model, "smallcnn", categories, input_size=32, pixel_mean=MEAN)
    return url


def test_detectors_sharing_layers_1_to_7_compute_them_once_and_score_like_their_own_model(
    tmp_path,
):
    categories = CategoryMap(("n1", "n2", "n3"))
    torch.manual_seed(0)
    base, other = get_model("smallcnn", 3), get_model("smallcnn", 3)
    adapted = get_model("smallcnn", 3)
    adapted.load_state_dict(base.state_dict())
    with torch.no_grad():
        adapted.output.weight[2] += 1.0  # another output layer on the same trunk
    urls = {n: _save(tmp_path, n, m, categories) for n, m in
            {"base": base, "adapted": adapted, "other": other}.items()}  # fmt: skip
    det = MultiDetector(urls, PostConfig(), rows=["n1", "n3"])
    assert len(det.trunks) == 2 and len(det.heads) == 3

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 30, 30], [10, 5, 70, 50], [40, 20, 79, 59]], np.float32)
    logits = det.logits(image, boxes)
    x = torch.from_numpy(warp_windows(image, boxes, 32, context_padding(32), np.array(MEAN)))
    x = (x.permute(0, 3, 1, 2).float() - torch.tensor(MEAN).view(1, 3, 1, 1)) / 64.0
    for name, model in {"base": base, "adapted": adapted, "other": other}.items():
        torch.testing.assert_close(logits[name], model.eval()(x))

    b, s, w = det.score(image, boxes)["adapted"]
    expected = logits["adapted"][:, [0, 2]] - logits["adapted"][:, 3:4]
    assert set(w) <= {"n1", "n3"} and len(s) > 0
    for wnid, score in zip(w, s, strict=True):
        assert np.isclose(score, expected[:, ["n1", "n3"].index(wnid)].numpy()).any()
