"""Config dataclasses. Loaded from YAML (``configs/``) and overridable on the command line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToyWorldConfig:
    """Size and look of the built-in dataset (``lsda toyworld``); see docs/toyworld.md."""

    seed: int = 0
    det_categories: int = 48  # K detection categories; the first half by name get DET boxes
    leaf_categories: int = 0  # extra vocabulary with classification images only
    cls_images: int = 200  # per detection category
    leaf_cls_images: int = 10  # per leaf category (kept small: vocabulary scales to thousands)
    det_train_scenes: int = 200  # DET train scenes, objects of set B only
    val1_scenes: int = 300  # detection training scenes with every category (split val1)
    val2_scenes: int = 300  # evaluation scenes (split val2)
    scene_size: int = 160
    cls_size_min: int = 32
    cls_size_max: int = 64
    cls_format: str = "mixed"  # folders | tars | mixed (detection categories in folders)

    def __post_init__(self) -> None:
        if self.det_categories < 2 or self.det_categories > 390:
            raise ValueError("det_categories must be within 2..390 (13 shapes x 5 patterns x 6)")
        if self.cls_format not in ("folders", "tars", "mixed"):
            raise ValueError(f"cls_format must be folders, tars or mixed, not {self.cls_format}")
        if min(self.cls_images, self.det_train_scenes, self.val1_scenes, self.val2_scenes) < 1:
            raise ValueError("every split needs at least one image")


TOYWORLD_SIZES: dict[str, dict[str, Any]] = {
    # seconds: the unit tests' size
    "test": dict(
        det_categories=8,
        leaf_categories=4,
        cls_images=12,
        leaf_cls_images=4,
        det_train_scenes=12,
        val1_scenes=8,
        val2_scenes=8,
    ),
    # the size of `lsda run --quick` (TOYWORLD.md: ordering noisy below ~40 categories)
    "quick": dict(
        det_categories=24,
        cls_images=100,
        det_train_scenes=100,
        val1_scenes=100,
        val2_scenes=150,
    ),
    "demo": {},
}


def toyworld_config(size: str = "demo", **overrides: Any) -> ToyWorldConfig:
    if size not in TOYWORLD_SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {sorted(TOYWORLD_SIZES)}")
    values = {**TOYWORLD_SIZES[size], **{k: v for k, v in overrides.items() if v is not None}}
    return ToyWorldConfig(**values)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
