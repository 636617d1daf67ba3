"""Networks with addressable layers: ``features`` (conv), ``fc6``, ``fc7`` and ``output``.

The output layer holds one row per category and, last, the background row; the category ->
row mapping (``CategoryMap``) travels with every checkpoint so no stage can mix up rows.
Registry: ``get_model(name, num_categories)``; ``smallcnn`` (32 px, the built-in dataset's
default, trains in minutes on 2 CPU cores) and ``alexnet`` (227 px, torchvision's layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from schemas.arrow import BACKGROUND  # the label of background windows in the shards


@dataclass(frozen=True)
class CategoryMap:
    """Row i of the output layer is ``wnids[i]``; the background row comes last."""

    wnids: tuple[str, ...]

    @property
    def num_categories(self) -> int:
        return len(self.wnids)

    @property
    def background_row(self) -> int:
        return len(self.wnids)

    def rows(self, wnids) -> list[int]:
        index = {w: i for i, w in enumerate(self.wnids)}
        return [index[w] for w in wnids]

    def row_of(self, label: str) -> int:
        return self.background_row if label == BACKGROUND else self.rows([label])[0]


class LSDANet(nn.Module):
    """conv features -> fc6 -> fc7 -> output (K categories + background)."""

    def __init__(
        self,
        features: nn.Module,
        feat_dim: int,
        hidden: int,
        num_categories: int,
        input_size: int,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.input_size = input_size
        self.features = features
        self.fc6 = nn.Linear(feat_dim, hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.output = nn.Linear(hidden, num_categories + 1)
        self.dropout = nn.Dropout(dropout)

    def fc6_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc6(torch.flatten(self.features(x), 1)))

    def fc7_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.relu(self.fc7(self.dropout(self.fc6_features(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.fc7_features(x))


def smallcnn(num_categories: int) -> LSDANet:
    """Three 3x3 conv layers (24/48/96, ReLU, 2x2 max-pool), fc6/fc7 of 256, at 32 px."""
    layers: list[nn.Module] = []
    channels = 3
    for width in (24, 48, 96):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        channels = width
    return LSDANet(nn.Sequential(*layers), 96 * 4 * 4, 256, num_categories, input_size=32)


def alexnet(num_categories: int) -> LSDANet:
    """torchvision's AlexNet layers at 227 px (its adaptive pool makes 6x6 maps)."""
    from torchvision.models import alexnet as tv_alexnet

    base = tv_alexnet(weights=None)
    features = nn.Sequential(base.features, base.avgpool)
    return LSDANet(features, 256 * 6 * 6, 4096, num_categories, input_size=227)


MODELS = {"smallcnn": smallcnn, "alexnet": alexnet}


def get_model(name: str, num_categories: int) -> LSDANet:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name](num_categories)


# torchvision's AlexNet classifier indices -> our layer names (the 1000-way layer is dropped).
_ALEXNET_RENAMES = {"classifier.1.": "fc6.", "classifier.4.": "fc7."}


def load_imagenet_weights(model: LSDANet, state: dict[str, torch.Tensor]) -> list[str]:
    """Load a torchvision-style ImageNet state dict into ``model``; the output layer stays new.

    Returns the names that were loaded. Raises ValueError naming any shape mismatch.
    """
    renamed = {}
    for key, value in state.items():
        if key.startswith("classifier.6."):
            continue
        new = key.replace("features.", "features.0.", 1) if key.startswith("features.") else key
        for old, ours in _ALEXNET_RENAMES.items():
            new = new.replace(old, ours)
        renamed[new] = value
    own = model.state_dict()
    bad = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in renamed.items()
        if k in own and own[k].shape != v.shape
    ]
    unknown = [k for k in renamed if k not in own]
    if bad or unknown:
        raise ValueError(f"weights do not fit the model: shapes {bad}, unknown {unknown[:5]}")
    model.load_state_dict(renamed, strict=False)
    return sorted(renamed)
