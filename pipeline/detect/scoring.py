"""Scoring windows with several detectors at once, on the CPU or a GPU.

Detectors that share layers 1-7 (the classifier and "background only"; a fine-tune and its
adapted variants) differ only in the output layer, so each distinct trunk computes fc7
features once and every head applies one matrix product. On a GPU the image goes to the device
once, its windows are cut out there (``warp_torch``) and scores stay there through NMS; only
the final detections come back.
"""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import torch

from pipeline.detect.postprocess import background_scores, ranked_detections
from pipeline.detect.warp_torch import warp_windows_torch
from pipeline.extract.warp import context_padding, warp_windows
from pipeline.model.checkpoints import load_model
from pipeline.model.host_syncs import from_host, on_device
from pipeline.model.nets import CategoryMap, LSDANet
from pipeline.model.preprocess import mean_tensor, normalise
from schemas.config import PostConfig, ScoringConfig

CPU_BATCH, GPU_BATCH = 512, 2048  # windows per forward pass


def scoring_device(cfg: ScoringConfig) -> torch.device:
    """The actor's GPU with ``gpus`` (Ray sets CUDA_VISIBLE_DEVICES to the one it granted)."""
    if not cfg.gpus:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("scoring with --gpus, but torch sees no CUDA device on this worker")
    return torch.device("cuda")


class WindowFeeder:
    """An image's windows as network inputs on ``device``, in batches, and the precision the
    network runs them in."""

    def __init__(self, size: int, mean, cfg: ScoringConfig, device: torch.device | None = None):
        device = device or scoring_device(cfg)
        self.size, self.device = size, device
        self.mean = np.asarray(mean, np.float32)
        self.mean_t = mean_tensor(self.mean, device)
        self.fill = torch.from_numpy(np.round(self.mean)).to(device)  # cv2 path's uint8 fill
        on_gpu = device.type == "cuda"
        self.batch = cfg.windows_per_batch or (GPU_BATCH if on_gpu else CPU_BATCH)
        self.warp = cfg.warp if cfg.warp != "auto" else ("torch" if on_gpu else "cv2")
        self.bf16 = cfg.resolved_precision == "bf16"
        self.channels_last = on_gpu  # cuDNN's fast convolutions want NHWC
        if on_gpu:
            torch.backends.cudnn.benchmark = True  # fixed window size: tune the kernels once

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.eval().to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def batches(self, image: np.ndarray, boxes: np.ndarray, boxes_t: torch.Tensor | None = None):
        """R-CNN warping, then the normalisation training used, ``batch`` windows at a time;
        ``boxes_t``: ``boxes`` already on the device (copied once per image)."""
        padding = context_padding(self.size)
        if self.warp == "torch":
            pixels = on_device(from_host(image), self.device).permute(2, 0, 1).float()
            if boxes_t is None:
                boxes_t = on_device(torch.from_numpy(boxes), self.device)
        for start in range(0, len(boxes), self.batch):
            if self.warp == "torch":
                part = boxes_t[start : start + self.batch]
                x = warp_windows_torch(pixels, part, self.size, padding, self.fill)
            else:
                part = boxes[start : start + self.batch]
                w = warp_windows(image, part, self.size, padding, self.mean)
                x = on_device(torch.from_numpy(w), self.device).permute(0, 3, 1, 2).float()
            x = normalise(x, self.mean_t)
            yield x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def map(self, image: np.ndarray, boxes: np.ndarray, fn, boxes_t=None) -> list:
        """``fn`` of every batch of the image's windows, run in the feeder's precision."""
        out = []
        for x in self.batches(image, boxes, boxes_t):
            with self.autocast():
                out.append(fn(x))
        return out


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
        scoring: ScoringConfig = ScoringConfig(),
    ):
        self.post = post
        self.trunks: dict[str, LSDANet] = {}
        self.heads: dict[str, tuple[str, torch.nn.Linear]] = {}
        self.categories: CategoryMap | None = None
        for name, url in urls.items():
            model, categories, payload = load_model(url)
            if self.categories is None:
                self.categories, self.input_size = categories, payload["input_size"]
                self.mean = np.asarray(payload["pixel_mean"], np.float32)
                self.feeder = WindowFeeder(self.input_size, self.mean, scoring)
                self.device = self.feeder.device
            elif categories != self.categories:
                raise ValueError(f"{url}: category map differs from the other detectors'")
            key = _trunk_key(model)
            if key not in self.trunks:
                self.trunks[key] = self.feeder.prepare(model)
            self.heads[name] = (key, model.output.eval().to(self.device))
        wanted = scored_wnids(self.categories, rows)
        self.score_rows = torch.tensor(self.categories.rows(wanted), device=self.device)
        self.score_wnids = wanted

    def batch_logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """name -> float32 logits of one batch of network inputs: each trunk runs once."""
        feats = {key: trunk.fc7_features(x) for key, trunk in self.trunks.items()}
        return {name: head(feats[key]).float() for name, (key, head) in self.heads.items()}

    @torch.no_grad()
    def logits(
        self, image: np.ndarray, boxes: np.ndarray, boxes_t: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """name -> (windows, K + 1) float32 logits, on the scoring device."""
        per_batch = self.feeder.map(image, boxes, self.batch_logits, boxes_t)
        empty = torch.zeros(0, self.categories.num_categories + 1, device=self.device)
        return {n: torch.cat([b[n] for b in per_batch]) if per_batch else empty for n in self.heads}

    def score(self, image: np.ndarray, boxes: np.ndarray) -> dict[str, tuple]:
        """name -> (boxes, scores, wnids) after background subtraction and NMS. The image and
        its boxes go to the device once; the detections come back in one copy per detector."""
        boxes = np.ascontiguousarray(boxes, np.float32).reshape(-1, 4)
        boxes_t = on_device(torch.from_numpy(boxes), self.device)
        return self.postprocess(self.logits(image, boxes, boxes_t), boxes_t)

    def postprocess(
        self, logits_by_name: dict[str, torch.Tensor], boxes: torch.Tensor | np.ndarray
    ) -> dict[str, tuple]:
        """On the scoring device (``boxes`` there already, as ``score`` passes them, or on the
        host); only the kept detections come back to the host."""
        if not isinstance(boxes, torch.Tensor):
            boxes = on_device(
                torch.from_numpy(np.array(boxes, np.float32).reshape(-1, 4)), self.device
            )
        bg, rows, wnids = self.categories.background_row, self.score_rows, self.score_wnids
        return {
            name: kept_detections(boxes, background_scores(logits, bg)[:, rows], self.post, wnids)
            for name, logits in logits_by_name.items()
        }


def scored_wnids(categories: CategoryMap, rows: list[str] | None) -> list[str]:
    """The categories a detector scores: ``rows`` (None: all) that it has a row for; those
    held back from training have none and are not scored."""
    if rows is None:
        return list(categories.wnids)
    known = set(categories.wnids)
    return [w for w in rows if w in known]


def kept_detections(
    boxes: torch.Tensor, scores: torch.Tensor, post: PostConfig, wnids: list[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(boxes, scores, wnids) on the host of what NMS and the limits keep of ``scores``
    (windows, categories: column j is ``wnids[j]``), on ``boxes``' device until one copy."""
    b, s, c, ok = ranked_detections(boxes, scores, post)
    rows = torch.cat([b, s[:, None].float(), c[:, None].float(), ok[:, None].float()], 1)
    rows = rows.cpu().numpy()  # one copy; the rows not kept are dropped here
    rows = rows[rows[:, 6] > 0]
    return rows[:, :4].copy(), rows[:, 4].copy(), [wnids[int(i)] for i in rows[:, 5]]
