"""Which layers detection fine-tuning trains (the rows of the paper's Table 1).

A setting is a '+'-joined list of: ``fc6``, ``fc7``, ``conv`` (layers 1-5), ``all`` (conv + fc6 +
fc7) and ``fcB`` (the output rows of the categories with boxes). The background row always
trains: ``bg`` alone is "background only". The output rows that do not train (set A, and set B
without ``fcB``) are restored after every step, so they stay bit-for-bit what the classifier
had, weight decay and momentum notwithstanding.
"""

from __future__ import annotations

import torch

from pipeline.model.nets import LSDANet

TOKENS = {"bg", "fc6", "fc7", "fcB", "conv", "all"}
TABLE1 = ("bg", "fc6", "fc7", "fcB", "fc6+fc7", "fc6+fc7+fcB", "all+fcB")


def parse_layers(spec: str) -> set[str]:
    tokens = {t.strip() for t in spec.split("+") if t.strip()}
    unknown = tokens - TOKENS
    if unknown or not tokens:
        raise ValueError(f"train_layers {spec!r}: unknown {sorted(unknown)}; use {sorted(TOKENS)}")
    if "all" in tokens:
        tokens |= {"conv", "fc6", "fc7"}
    return (tokens - {"all"}) | {"bg"}


class RowFreezer:
    """Keeps the output rows outside ``trained_rows`` exactly as they were.

    The frozen rows are held as an index on the model's device (``index_fill_`` and
    ``index_copy_``, not a boolean mask): a step on a GPU then never waits for the device."""

    def __init__(self, layer: torch.nn.Linear, trained_rows: list[int]):
        self.layer = layer
        mask = torch.ones(layer.out_features, dtype=torch.bool)
        mask[trained_rows] = False
        self.frozen = mask.nonzero().flatten()
        self.weight = layer.weight.detach()[self.frozen].clone()
        self.bias = layer.bias.detach()[self.frozen].clone()

    def to(self, device: torch.device) -> RowFreezer:
        """Keep the index and the saved rows on the model's device: no host copy every step
        (the rows of thousands of categories are large)."""
        self.frozen, self.weight, self.bias = (
            t.to(device) for t in (self.frozen, self.weight, self.bias)
        )
        return self

    def _follow_layer(self) -> None:
        if self.weight.device != self.layer.weight.device:  # the model moved: once
            self.to(self.layer.weight.device)

    def zero_grads(self) -> None:
        self._follow_layer()
        for p in (self.layer.weight, self.layer.bias):
            if p.grad is not None:
                p.grad.index_fill_(0, self.frozen, 0)

    @torch.no_grad()
    def restore(self) -> None:
        self._follow_layer()
        self.layer.weight.index_copy_(0, self.frozen, self.weight)
        self.layer.bias.index_copy_(0, self.frozen, self.bias)


def configure_trainable(model: LSDANet, layers: set[str], trained_rows: list[int]) -> RowFreezer:
    """Set requires_grad per layer; return the freezer of the output rows that do not train."""
    modules = {"conv": model.features, "fc6": model.fc6, "fc7": model.fc7}
    for name, module in modules.items():
        for p in module.parameters():
            p.requires_grad = name in layers
    for p in model.output.parameters():
        p.requires_grad = True
    return RowFreezer(model.output, trained_rows)
