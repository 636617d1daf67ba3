"""``lsda detect --engine onnxruntime``: detectors exported by ``lsda export`` scored with
onnxruntime on the CPU. Same windows (R-CNN warp with cv2), same post-processing
(``kept_detections``) and outputs as ``MultiDetector``; only the network differs."""

from __future__ import annotations

import json

import numpy as np
import torch

from pipeline import lineage
from pipeline.detect.scoring import CPU_BATCH, kept_detections, scored_wnids
from pipeline.extract.warp import context_padding, warp_windows
from pipeline.io import storage
from pipeline.model.export import exported_paths
from pipeline.model.nets import CategoryMap
from schemas.config import PostConfig, ScoringConfig

ENGINES = ("torch", "onnxruntime")


def read_export(model_url: str) -> tuple[str, dict]:
    """(ONNX URL, manifest) of ``model_url``'s export; a clear error when there is none or it
    was made from another version of the checkpoint."""
    paths = exported_paths(model_url)
    if not storage.exists(paths["onnx"]) or not storage.exists(paths["manifest"]):
        raise FileNotFoundError(f"{model_url}: not exported to ONNX; run lsda export first")
    manifest = json.loads(storage.read_text(paths["manifest"]))
    if model_url.endswith(".pt") and manifest["source"] != lineage.of(model_url):
        raise ValueError(f"{paths['onnx']} was exported from another {model_url}: export again")
    return paths["onnx"], manifest


class OnnxDetectors:
    """Detectors by name, each an ONNX scoring graph; ``score`` as ``MultiDetector.score``."""

    def __init__(
        self,
        urls: dict[str, str],
        post: PostConfig,
        rows: list[str] | None = None,
        scoring: ScoringConfig = ScoringConfig(),
    ):
        import onnxruntime as ort

        if scoring.gpus:
            raise ValueError("--engine onnxruntime scores on the CPU: leave out --gpus")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one actor per core, as the torch engine
        options.inter_op_num_threads = 1
        self.post, self.sessions, wnids = post, {}, None
        for name, url in urls.items():
            onnx_url, manifest = read_export(url)
            if wnids is None:
                wnids, self.size = manifest["wnids"], manifest["input"]["shape"][1]
                self.mean = np.asarray(manifest["pixel_mean"], np.float32)
            elif manifest["wnids"] != wnids:
                raise ValueError(f"{onnx_url}: category list differs from the other detectors'")
            self.sessions[name] = ort.InferenceSession(
                storage.read_bytes(onnx_url), options, providers=["CPUExecutionProvider"]
            )
        categories = CategoryMap(tuple(wnids))
        self.score_wnids, self.n_outputs = scored_wnids(categories, rows), len(wnids)
        self.score_cols = np.array(categories.rows(self.score_wnids), np.int64)
        self.batch = scoring.windows_per_batch or CPU_BATCH

    def scores(self, name: str, windows: np.ndarray) -> np.ndarray:
        """(N, K) float32 scores of uint8 windows (N, size, size, 3)."""
        return self.sessions[name].run(["scores"], {"windows": windows})[0]

    def score(self, image: np.ndarray, boxes: np.ndarray) -> dict[str, tuple]:
        """name -> (boxes, scores, wnids) after NMS."""
        boxes = np.ascontiguousarray(boxes, np.float32).reshape(-1, 4)
        padding = context_padding(self.size)
        per_name: dict[str, list] = {name: [] for name in self.sessions}
        for start in range(0, len(boxes), self.batch):
            windows = warp_windows(image, boxes[start : start + self.batch], self.size, padding,
                                   self.mean)  # fmt: skip
            for name in self.sessions:
                per_name[name].append(self.scores(name, windows))
        boxes_t = torch.from_numpy(boxes)
        result = {}
        for name, parts in per_name.items():
            s = np.concatenate(parts) if parts else np.zeros((0, self.n_outputs), np.float32)
            s = torch.from_numpy(np.ascontiguousarray(s[:, self.score_cols], np.float32))
            result[name] = kept_detections(boxes_t, s, self.post, self.score_wnids)
        return result
