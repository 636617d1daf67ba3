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
    # Each category's classification images: a seeded count in [n * (1 - spread), n], as in
    # ImageNet (732 to 1,300 per class: spread 0.44). 0: exactly n.
    class_count_spread: float = 0.0
    det_train_scenes: int = 200  # DET train scenes, objects of set B only (but see below)
    # DET train scenes of every detection category, each in its primary object's folder, as
    # ImageNet's DET train is: the oracle reads set A's folders, the other fine-tunes do not.
    det_train_every_category: bool = False
    val1_scenes: int = 300  # detection training scenes with every category (split val1)
    val2_scenes: int = 300  # evaluation scenes (split val2)
    scene_size: int = 160
    cls_size_min: int = 32
    cls_size_max: int = 64
    cls_format: str = "mixed"  # folders | tars | mixed (detection categories in folders)

    def __post_init__(self) -> None:
        if self.det_categories < 2 or self.det_categories > 390:
            raise ValueError("det_categories must be within 2..390 (13 shapes x 5 patterns x 6)")
        if not 0 <= self.class_count_spread < 1:
            raise ValueError("class_count_spread must be within [0, 1)")
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
    # Laid out like ImageNet: 200 categories (ILSVRC DET's count), classification images in
    # class folders with ImageNet's spread of class counts, each class filling whole shards
    # (>= 36 images vs the toyworld config's 32 per shard), DET train scenes in class folders.
    "imagenet": dict(
        det_categories=200,
        cls_images=64,
        class_count_spread=0.44,
        cls_format="folders",
        det_train_scenes=400,
        val1_scenes=200,
        val2_scenes=200,
    ),
}


def toyworld_config(size: str = "demo", **overrides: Any) -> ToyWorldConfig:
    if size not in TOYWORLD_SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {sorted(TOYWORLD_SIZES)}")
    values = {**TOYWORLD_SIZES[size], **{k: v for k, v in overrides.items() if v is not None}}
    return ToyWorldConfig(**values)


AUTO_COUNTS = ("epochs", "iterations")  # fields that also take "auto"


def count_or_auto(text: str) -> int | str:
    """A command-line value of an ``AUTO_COUNTS`` field."""
    return text if text == "auto" else int(text)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


@dataclass(frozen=True)
class ExtractConfig:
    """Proposal and window extraction (``lsda extract``); defaults are R-CNN's (DESIGN §5)."""

    resize_width: int = 500  # selective search runs on the image resized to this width; 0 = as is
    ss_mode: str = "fast"
    max_proposals: int = 2000
    min_box: int = 16  # proposals narrower or shorter than this (original pixels) are dropped
    window_size: int = 227  # the network's input; context padding is 16 px at 227, scaled
    fg_iou: float = 0.5
    bg_per_image: int = 128  # background windows sampled per training image (all foreground kept)
    window_encoding: str = "raw"  # raw uint8 (exact) or jpeg (compact at 227 px)
    cls_size: int = 256  # classification images are stored resized to cls_size x cls_size
    shard_size: int = 64  # images per shard (one Ray task, one Parquet file per output)
    # Training splits (cls, windows): "mixed" shards them in a seeded cross-class order; "sorted"
    # keeps the listing's (class-by-class on ImageNet) order, for measuring what mixing buys.
    shard_order: str = "mixed"
    train_images_per_class: int = 0  # det-train: at most this many images per synset; 0 = all
    max_pixels: int = 64_000_000  # decompression-bomb guard
    pixel_mean: tuple[float, float, float] = (123.68, 116.78, 103.94)  # RGB, fills outside
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ss_mode not in ("fast", "quality"):
            raise ValueError("ss_mode must be fast or quality")
        if self.shard_order not in ("mixed", "sorted"):
            raise ValueError("shard_order must be mixed or sorted")
        if self.window_encoding not in ("raw", "jpeg"):
            raise ValueError("window_encoding must be raw or jpeg")
        if self.window_size < 8 or self.shard_size < 1:
            raise ValueError("window_size must be >= 8 and shard_size >= 1")


def config_url(spec: str) -> str:
    """A ``--config`` value as a URL: a shipped config's name (``toyworld``, ``ilsvrc13``,
    ``imagenet7k``), or a path / URL as given."""
    if "/" in spec or spec.endswith((".yaml", ".yml")):
        return spec
    from importlib.resources import files

    shipped = files("configs") / f"{spec}.yaml"
    if not shipped.is_file():
        names = sorted(p.name[:-5] for p in files("configs").iterdir() if p.name.endswith(".yaml"))
        raise FileNotFoundError(f"no config named {spec!r}: use one of {names}, or a path")
    return str(shipped)


@dataclass(frozen=True)
class TrainConfig:
    """Classification (``[train_cls]``) and detection (``[train_det]``) fine-tuning.

    Defaults are the paper's (SGD, lr 0.001 / 10 every 20k iterations, momentum 0.9, weight
    decay 5e-4, minibatch 32 foreground + 96 background); ``configs/toyworld.yaml`` sets the
    small-CNN recipe that trains on 2 CPU cores.
    """

    model: str = "alexnet"
    init_weights: str = ""  # URL of an ImageNet state dict (train-cls only)
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.001
    lr_step: int = 20_000  # iterations between lr / 10
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # train-cls: epochs, or "auto": until the held-out accuracy stops rising (at most
    # max_epochs; pipeline/train/stopping.py)
    epochs: int | str = 8
    max_epochs: int = 60
    # Minibatch sizes are per optimizer step, all workers together (the paper's 128 = 32 fg +
    # 96 bg): each of N workers takes 1/N of them, so steps per epoch do not depend on N.
    batch_size: int = 128  # train-cls
    holdout_every: int = 10  # 1 image in N (by hash of its name) is held out for accuracy
    # train-det: iterations, or "auto": until the training loss (mean per checkpoint_every)
    # stops falling (at most max_iterations)
    iterations: int | str = 20_000
    max_iterations: int = 20_000
    patience: int = 3  # auto: reports in a row without min_improvement end the fit
    min_improvement: float = 0.01  # relative, of the best report before them
    fg_per_batch: int = 32
    bg_per_batch: int = 96
    train_layers: str = "all+fcB"  # see pipeline/model/layers.py: bg, fc6, fc7, fcB, conv, all
    oracle: bool = False  # train-det on windows of every category (the upper bound)
    checkpoint_every: int = 250  # train-det iterations between checkpoints
    workers: int = 2
    gpus: bool = False
    max_failures: int = 1
    seed: int = 0
    inject_failure_at: int = -1  # tests: fail once after this checkpoint (epoch or iteration)

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError("optimizer must be sgd or adam")
        for name in AUTO_COUNTS:
            value = getattr(self, name)
            if value != "auto" and not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer or auto, not {value!r}")
        if self.patience < 1:
            raise ValueError("patience must be >= 1")


@dataclass(frozen=True)
class ScoringConfig:
    """How ``detect`` and ``score-vocab`` run the network over windows (``[scoring]``)."""

    gpus: bool = False  # one GPU per scoring actor
    # auto: bf16 with --gpus (autocast; on a GPU, ~1.5x AlexNet's fp32 rate), fp32 on CPUs
    # (bf16 is slower there) | fp32 | bf16
    precision: str = "auto"
    # Where windows are cut out: "torch" on the network's device (the image goes there once),
    # "cv2" on the actor's CPU. auto: torch on a GPU, cv2 on the CPU (faster there).
    warp: str = "auto"
    windows_per_batch: int = 0  # per forward pass; 0: 512 on the CPU, 2,048 on a GPU

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError("precision must be auto, fp32 or bf16")
        if self.warp not in ("auto", "cv2", "torch"):
            raise ValueError("warp must be auto, cv2 or torch")
        if self.windows_per_batch < 0:
            raise ValueError("windows_per_batch must be >= 0")

    @property
    def resolved_precision(self) -> str:
        """The precision scoring runs in (``auto`` resolved), as the detections record it."""
        if self.precision == "auto":
            return "bf16" if self.gpus else "fp32"
        return self.precision


@dataclass(frozen=True)
class PipelineConfig:
    """``lsda run``: which detectors make the ablation and how they are scored (``[run]``)."""

    k: int = 5  # neighbours of the k-NN row (named knn-<k>)
    eval_split: str = "val2"
    actors: int = 2  # scoring actors
    draw: int = 6  # example images in the report
    bg_only_iterations: int = 0  # 0: as many as train_det.iterations
    mil: bool = True  # the knn-<k>-mil row: lsda extract --split mil, lsda mil ([mil])


@dataclass(frozen=True)
class CategorySplit:
    """Which categories play which part (``[categories]``), for every stage alike: set B has
    boxes (the first half of map_det, the paper's split, or all); set A has none, and its boxes
    never reach training; the last ``hold_back`` of set A are left out of every stage, for
    ``lsda add-categories`` to bring in later."""

    set_b: str = "first-half"
    hold_back: int = 0

    def __post_init__(self) -> None:
        if self.set_b not in ("first-half", "all"):
            raise ValueError("set_b must be first-half or all")
        if self.hold_back < 0:
            raise ValueError("hold_back must be >= 0")


@dataclass(frozen=True)
class PostConfig:
    """From window scores to detections (``[detect]``): R-CNN's test-time settings."""

    nms_iou: float = 0.3  # per-class NMS
    pre_nms_top: int = 300  # windows kept per class before NMS
    max_per_class: int = 10  # detections kept per class and image
    max_per_image: int = 0  # 0: no limit
    score_threshold: float = float("-inf")
    # detections.json, for people and their tools: each image's best N (COCO's 100; 0: all).
    # detections.parquet keeps every detection, and evaluation reads it.
    coco_per_image: int = 100


@dataclass(frozen=True)
class VocabPostConfig:
    """``score-vocab`` (``[score_vocab]``), LSDA's 7,604-category demo: NMS 0.1 per class, 0.4
    across classes, score >= 1, at most 100 classes per image."""

    score_threshold: float = 1.0
    per_class: int = 10  # windows kept per category (and per node) before NMS
    per_image: int = 5000  # candidates kept per image before NMS
    class_nms: float = 0.1
    cross_nms: float = 0.4
    max_classes: int = 100  # per image, and per hierarchy level
    chunk: int = 4096  # categories per matrix product


@dataclass(frozen=True)
class MilConfig:
    """Multiple-instance refinement of the held-out rows (``[mil]``, ``lsda extract --split
    mil`` and ``lsda mil``; pipeline/mil/refine.py). Chosen on val1's set-A boxes, never on
    val2 (docs/mil.md)."""

    images_per_category: int = 50  # bags per category: a seeded sample of its images
    leaves: bool = True  # the leaf categories without boxes too (score-vocab's); off: set A
    rounds: int = 2  # choose positives, refit the row; again
    top: int = 1  # positives per bag and round
    lam: float = 1e-3  # pull towards the k-NN adapted row
    steps: int = 200  # L-BFGS iterations per round
    negatives: int = 131072  # the pool: background proposals of DET train (built once)
    hard_negatives: int = 4096  # of the pool, each round's highest-scoring (0: all of it)
    # an option for a DET train whose background may hold held-out objects (docs/mil.md):
    # pool windows scoring above this quantile of the round's positives are not negatives
    unlabelled_quantile: float | None = None
    categories_per_task: int = 64  # one Ray Data row of work: these categories' bags
    actors: int = 2  # feature actors (each holds layers 1-7 and the negatives' features)
    # the option: fc7 and the output rows refitted together after the rows (shared_fc7.py);
    # off, layers 1-7 and set B's rows stay bit for bit the base's
    fc7: bool = False
    fc7_steps: int = 500  # Adam steps, minibatches of 32 + 96 windows
    fc7_lr: float = 1e-4  # the detection fine-tune's rate
    fc7_windows: int = 65536  # DET train's stored windows in the fit (set B's and background)

    def __post_init__(self) -> None:
        if self.images_per_category < 1 or self.rounds < 1 or self.top < 1:
            raise ValueError("images_per_category, rounds and top must be >= 1")
        if self.lam < 0 or self.negatives < 1 or self.categories_per_task < 1:
            raise ValueError("lam must be >= 0; negatives, categories_per_task >= 1")
        if self.hard_negatives < 0:
            raise ValueError("hard_negatives must be >= 0 (0: the whole pool)")
        if self.unlabelled_quantile is not None and not 0 <= self.unlabelled_quantile <= 1:
            raise ValueError("unlabelled_quantile must be within [0, 1] (or null: off)")
        if self.fc7_steps < 1 or self.fc7_lr <= 0 or self.fc7_windows < 1:
            raise ValueError("fc7_steps, fc7_lr and fc7_windows must be > 0")


@dataclass(frozen=True)
class RunConfig:
    """A whole config file: one dataclass per YAML section."""

    extract: ExtractConfig = ExtractConfig()
    categories: CategorySplit = CategorySplit()
    train_cls: TrainConfig = TrainConfig()
    train_det: TrainConfig = TrainConfig()
    scoring: ScoringConfig = ScoringConfig()
    detect: PostConfig = PostConfig()
    score_vocab: VocabPostConfig = VocabPostConfig()
    run: PipelineConfig = PipelineConfig()
    mil: MilConfig = MilConfig()


def _section(cls: type, values: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
    # YAML lists -> the tuples the dataclasses declare
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def load_config(spec: str | None = None, quick: bool = False) -> RunConfig:
    """A config file (a shipped name, a path or a URL) read once into a ``RunConfig``; with
    ``quick``, its ``[quick]`` overrides on top. No file: the defaults."""
    doc: dict[str, Any] = {}
    url = config_url(spec) if spec else None
    if url:
        import yaml

        from pipeline.io import storage

        doc = yaml.safe_load(storage.read_text(url)) or {}
    sections = [f.name for f in dataclasses.fields(RunConfig)]
    unknown = set(doc) - set(sections) - {"quick"}
    if unknown:
        raise ValueError(f"{url}: unknown sections {sorted(unknown)}; known: {sorted(sections)}")
    overrides = (doc.get("quick") or {}) if quick else {}
    defaults = RunConfig()
    values = {}
    for name in sections:
        mine = {**(doc.get(name) or {}), **(overrides.get(name) or {})}
        cls = type(getattr(defaults, name))
        values[name] = _section(cls, mine, f"{url} [{name}]") if mine else cls()
    return RunConfig(**values)
