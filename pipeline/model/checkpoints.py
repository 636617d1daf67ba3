"""Model artifacts: weights + category map + config, at any fsspec URL.

Loaded with ``torch.load(weights_only=True)``: only tensors and plain containers, never code.
"""

from __future__ import annotations

import io

import torch

from pipeline.io import storage
from pipeline.model.nets import CategoryMap, LSDANet, get_model


def save_model(url: str, model: LSDANet, model_name: str, categories: CategoryMap, **extra) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"model": model_name, "state_dict": state, "wnids": list(categories.wnids), **extra}
    buf = io.BytesIO()
    torch.save(payload, buf)
    storage.write_bytes(url, buf.getvalue())


def load_payload(url: str) -> dict:
    try:
        return torch.load(
            io.BytesIO(storage.read_bytes(url)), weights_only=True, map_location="cpu"
        )
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{url}: no model checkpoint there") from exc


def load_model(url: str) -> tuple[LSDANet, CategoryMap, dict]:
    """The model, its category map, and the rest of the payload."""
    payload = load_payload(url)
    categories = CategoryMap(tuple(payload["wnids"]))
    model = get_model(payload["model"], categories.num_categories)
    model.load_state_dict(payload["state_dict"])
    return model, categories, payload


def load_state_dict(url: str) -> dict:
    """A user-supplied state dict (e.g. torchvision's ImageNet AlexNet)."""
    obj = torch.load(io.BytesIO(storage.read_bytes(url)), weights_only=True, map_location="cpu")
    return obj.get("state_dict", obj) if isinstance(obj, dict) else obj
