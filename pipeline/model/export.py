"""A detector as a standalone scoring graph: ONNX and TorchScript, with its vocabulary beside it.

The graph takes what R-CNN warping makes (``extract.warp.warp_windows``): uint8 windows
(N, size, size, 3), RGB, outside filled with the pixel mean. It returns float32 scores
(N, K): each category's logit minus the background logit, the score ``detect`` ranks and
suppresses. The pixel mean, the scale and the background row are baked in, so a client needs
the warp, the graph and the wnid list, not this package. Files written for ``NAME.pt``:

- ``NAME.onnx`` (opset ``OPSET``, the window count a dynamic axis),
- ``NAME.torchscript.pt`` (traced; ``torch.jit.load``),
- ``NAME.json``: wnids in output order, input size, pixel mean and scale, context padding,
  opset, the source checkpoint's lineage.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from pipeline import lineage
from pipeline.extract.warp import context_padding
from pipeline.io import storage
from pipeline.model.checkpoints import load_model
from pipeline.model.preprocess import PIXEL_SCALE, mean_tensor

OPSET = 18  # the ONNX exporter's (torch.export-based) own default; onnxruntime >= 1.14 runs it
FORMATS = ("onnx", "torchscript")


class ScoringGraph(nn.Module):
    """uint8 windows (N, S, S, 3) -> scores (N, K): a network's logits less its background's."""

    def __init__(self, net: nn.Module, pixel_mean, background_row: int):
        super().__init__()
        self.net = net.eval()
        self.register_buffer("mean", mean_tensor(pixel_mean, torch.device("cpu")))
        self.background_row = background_row

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        x = (windows.permute(0, 3, 1, 2).float() - self.mean) / PIXEL_SCALE
        logits = self.net(x)
        return logits[:, : self.background_row] - logits[:, self.background_row :]


def exported_paths(model_url: str, out: str | None = None) -> dict[str, str]:
    """format -> URL of ``model_url``'s exports (beside it, or in the folder ``out``)."""
    folder, name = model_url.rsplit("/", 1)
    stem, folder = name.removesuffix(".pt"), out or folder
    return {
        "onnx": storage.join(folder, f"{stem}.onnx"),
        "torchscript": storage.join(folder, f"{stem}.torchscript.pt"),
        "manifest": storage.join(folder, f"{stem}.json"),
    }


def export_detector(
    model_url: str, out: str | None = None, formats: tuple[str, ...] = FORMATS
) -> dict:
    """Write ``model_url``'s scoring graph in ``formats``; returns the manifest."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}; choose from {FORMATS}")
    net, categories, payload = load_model(model_url)
    size = payload["input_size"]
    graph = ScoringGraph(net, payload["pixel_mean"], categories.background_row).eval()
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    paths = exported_paths(model_url, out)
    written = {}
    with tempfile.TemporaryDirectory(prefix="lsda-export-") as tmp:
        for fmt in formats:
            local = Path(tmp, paths[fmt].rsplit("/", 1)[1])
            (_onnx if fmt == "onnx" else _torchscript)(graph, example, local)
            storage.write_bytes(paths[fmt], local.read_bytes())
            written[fmt] = {"url": paths[fmt], "bytes": local.stat().st_size}
    manifest = {
        "source": lineage.of(model_url),
        "model": payload["model"],
        "wnids": list(categories.wnids),
        "input": {
            "name": "windows",
            "shape": ["N", size, size, 3],
            "dtype": "uint8",
            "layout": "NHWC, RGB; R-CNN warp of each box, its outside filled with pixel_mean",
            "context_padding": context_padding(size),
        },
        "output": {"name": "scores", "shape": ["N", len(categories.wnids)], "dtype": "float32"},
        "pixel_mean": [float(v) for v in payload["pixel_mean"]],
        "pixel_scale": PIXEL_SCALE,
        "opset": OPSET,
        "torch": torch.__version__,
        "files": written,
    }
    storage.write_text(paths["manifest"], json.dumps(manifest, indent=1))
    return manifest


def _onnx(graph: nn.Module, example: torch.Tensor, path: Path) -> None:
    windows = torch.export.Dim("windows", min=1)
    with torch.no_grad():
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            input_names=["windows"],
            output_names=["scores"],
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes={"windows": {0: windows}},
            external_data=False,  # one file: AlexNet's 4,096-wide layers are ~230 MB, < 2 GB
            verbose=False,
        )


def _torchscript(graph: nn.Module, example: torch.Tensor, path: Path) -> None:
    # torch 2.14 deprecates torch.jit in favour of torch.export; libtorch and TensorRT's
    # Torch-TensorRT still load TorchScript, which is why users ask for it.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(graph, example).save(str(path))
