"""Scoring windows with several detectors at once.

Detectors that share layers 1-7 (the classifier and "background only"; a fine-tune and its
adapted variants) differ only in the output layer, so each distinct trunk computes fc7
features once and every head applies one matrix product.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from pipeline.checkpoints import load_model
from pipeline.models import CategoryMap, LSDANet
from pipeline.postprocess import PostConfig, background_scores, detections
from pipeline.train_data import PIXEL_SCALE
from pipeline.warp import context_padding, warp_windows

CHUNK = 512  # windows per forward pass


def window_batches(image: np.ndarray, boxes: np.ndarray, size: int, mean: np.ndarray):
    """The network's input for ``boxes`` of ``image``, ``CHUNK`` windows at a time: R-CNN
    warping, then the normalisation training used (``to_input``)."""
    mean_t = torch.from_numpy(np.asarray(mean, np.float32)).view(1, 3, 1, 1)
    for start in range(0, len(boxes), CHUNK):
        pixels = warp_windows(
            image, boxes[start : start + CHUNK], size, context_padding(size), mean
        )
        yield (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - mean_t) / PIXEL_SCALE


def _trunk_key(model: LSDANet) -> str:
    h = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        if not name.startswith("output."):
            h.update(name.encode())
            h.update(tensor.cpu().numpy().tobytes())
    return h.hexdigest()


class MultiDetector:
    """Detectors by name; ``score`` returns per-detector detections of one image."""

    def __init__(
        self,
        urls: dict[str, str],
        post: PostConfig,
        rows: list[str] | None = None,
        device: str = "cpu",
    ):
        self.device = torch.device(device)
        self.post = post
        self.trunks: dict[str, LSDANet] = {}
        self.heads: dict[str, tuple[str, torch.nn.Linear]] = {}
        self.categories: CategoryMap | None = None
        for name, url in urls.items():
            model, categories, payload = load_model(url)
            if self.categories is None:
                self.categories, self.input_size = categories, payload["input_size"]
                self.mean = np.asarray(payload["pixel_mean"], np.float32)
            elif categories != self.categories:
                raise ValueError(f"{url}: category map differs from the other detectors'")
            key = _trunk_key(model)
            self.trunks.setdefault(key, model.eval().to(self.device))
            self.heads[name] = (key, model.output.eval().to(self.device))
        wanted = list(self.categories.wnids)
        if rows is not None:  # categories held back from training have no row: not scored
            known = set(wanted)
            wanted = [w for w in rows if w in known]
        self.score_rows = torch.tensor(self.categories.rows(wanted))
        self.score_wnids = wanted

    @torch.no_grad()
    def logits(self, image: np.ndarray, boxes: np.ndarray) -> dict[str, torch.Tensor]:
        out: dict[str, list[torch.Tensor]] = {name: [] for name in self.heads}
        for x in window_batches(image, boxes, self.input_size, self.mean):
            x = x.to(self.device)
            feats = {key: trunk.fc7_features(x) for key, trunk in self.trunks.items()}
            for name, (key, head) in self.heads.items():
                out[name].append(head(feats[key]).cpu())
        return {
            name: torch.cat(parts) if parts else torch.zeros(0, self.categories.num_categories + 1)
            for name, parts in out.items()
        }

    def score(self, image: np.ndarray, boxes: np.ndarray) -> dict[str, tuple]:
        """name -> (boxes, scores, wnids) after background subtraction and NMS."""
        return self.postprocess(self.logits(image, boxes), boxes)

    def postprocess(
        self, logits_by_name: dict[str, torch.Tensor], boxes: np.ndarray
    ) -> dict[str, tuple]:
        result = {}
        boxes_t = torch.from_numpy(np.array(boxes, np.float32).reshape(-1, 4))  # a writable copy
        for name, logits in logits_by_name.items():
            scores = background_scores(logits, self.categories.background_row)[:, self.score_rows]
            b, s, c = detections(boxes_t, scores, self.post)
            result[name] = (b.numpy(), s.numpy(), [self.score_wnids[i] for i in c.tolist()])
        return result
