"""The work dir's layout and every artifact's name, in one place: no other module builds a
path under WORK.

    WORK/index/cls/                the tars' cached member indexes (<wnid>-<key>.parquet)
    WORK/extract/<split>[-oracle]/  params.json, plan/, manifest/, proposals/, windows/ or
                                   cls/, _done/ (one marker per finished shard)
    WORK/train/<run>/              Ray Train's checkpoints of a fine-tune in progress
    WORK/models/                   cls.pt, det-<fine-tune>.pt, detector-<adapted>.pt
    WORK/adapt/<name>/             neighbours.parquet (who lent each held-out row its offset)
    WORK/mil/<name>/               lsda mil's refined rows per task, markers, summary.json
    WORK/detect/<model>/<split>/   detections.parquet, detections.json (COCO), drawn/
    WORK/evaluate/<model>/<split>/ metrics.json, ap.png
    WORK/report/                   index.html, metrics.json, charts

A split name is ``det-train``, ``val1``, ``val2``, ``cls``, ``mil`` (the held-out categories'
classification images as bags, ``lsda mil``) or ``images`` (``detect --images``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from pipeline.io import storage
from schemas.config import PipelineConfig

CLASSIFIER = "cls"
ORACLE_SUFFIX = "-oracle"  # extract/<split>-oracle: windows labelled with every category's box
AVG_OFFSET = "avg-offset"
MIL_SPLIT = "mil"


def labelled_split(split: str, oracle: bool = False) -> str:
    """The folder of ``split``'s windows: labelled by set B's boxes, or every box (oracle)."""
    return split + ORACLE_SUFFIX if oracle else split


def knn_name(k: int) -> str:
    """The k-NN adapted detector's name, from its one setting."""
    return f"knn-{k}"


def finetune_run(name: str) -> str:
    """A detection fine-tune's Ray Train run and model stem (``det-<name>``)."""
    return f"det-{name}"


def adapted_stem(name: str) -> str:
    return f"detector-{name}"


def model_file(spec: str) -> str:
    """A model's file name in WORK/models from its stem or file name (``knn-5`` is an adapted
    detector's short name, ``detector-knn-5`` its stem)."""
    if spec.endswith(".pt"):
        return spec
    if spec == CLASSIFIER or spec.startswith(("det-", "detector-")):
        return f"{spec}.pt"
    return f"{adapted_stem(spec)}.pt"


@dataclass(frozen=True)
class WorkDir:
    """Paths under one work dir (local or ``s3://``)."""

    root: str

    def _join(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    def extract(self, split: str, oracle: bool = False) -> str:
        """``split``'s extraction: labelled by set B's boxes, or by every box (oracle)."""
        return self._join("extract", labelled_split(split, oracle))

    def index(self, kind: str) -> str:
        """Cached input indexes (``cls``: one Parquet file per tar)."""
        return self._join("index", kind)

    def extract_parts(self, split: str, output: str, oracle: bool = False) -> list[str]:
        """The Parquet files of one output (``windows``, ``cls``, ``proposals``) of a split."""
        return storage.find(storage.join(self.extract(split, oracle), output), (".parquet",))

    def train_runs(self) -> str:
        return self._join("train")

    def train_run(self, run: str) -> str:
        return self._join("train", run)

    def model(self, spec: str) -> str:
        """A model file: ``cls``, ``det-<name>``, ``detector-<name>``, ``knn-5``, or a file."""
        return self._join("models", model_file(spec))

    def classifier(self) -> str:
        return self.model(CLASSIFIER)

    def finetuned(self, name: str) -> str:
        return self.model(finetune_run(name))

    def adapted(self, name: str) -> str:
        return self.model(adapted_stem(name))

    def neighbours(self, name: str) -> str:
        return self._join("adapt", name, "neighbours.parquet")

    def detections(self, model: str, split: str) -> str:
        return self._join("detect", model, split)

    def detection_table(self, model: str, split: str) -> str:
        return storage.join(self.detections(model, split), "detections.parquet")

    def detection_coco(self, model: str, split: str) -> str:
        """COCO-style results: image_id, category_id, bbox [x, y, w, h], score."""
        return storage.join(self.detections(model, split), "detections.json")

    def evaluation(self, model: str, split: str) -> str:
        return self._join("evaluate", model, split)

    def evaluation_file(self, model: str, split: str, name: str, level: str = "category") -> str:
        """``metrics.json``, ``ap.png``, ``errors.png`` of an evaluation; at the WordNet
        parents' level (``score-vocab --hierarchy``) ``metrics-parent.json`` and so on."""
        stem, ext = posixpath.splitext(name)
        suffix = "" if level == "category" else f"-{level}"
        return storage.join(self.evaluation(model, split), f"{stem}{suffix}{ext}")

    def metrics(self, model: str, split: str, level: str = "category") -> str:
        return self.evaluation_file(model, split, "metrics.json", level)

    def mil(self, name: str) -> str:
        """``lsda mil``'s tasks (rows and markers) and summary for ``detector-<name>.pt``."""
        return self._join("mil", name)

    def report(self) -> str:
        return self._join("report")

    def report_page(self) -> str:
        return storage.join(self.report(), "index.html")


# The fine-tuned rows of the ablation -> their fine-tune's name (models/det-<name>.pt)
FINETUNES = {"bg-only": "bg", "all-layers": "all-fcB", "oracle": "oracle"}


# What `lsda add-categories` and `score-vocab` use unless told: the run's k-NN detector, and
# the all-layers fine-tune whose offsets it was adapted with.
DEFAULT_DETECTOR = adapted_stem(knn_name(PipelineConfig.k))
DEFAULT_BASE = finetune_run(FINETUNES["all-layers"])


def mil_name(base: str) -> str:
    """The name of ``lsda mil``'s refinement of the adapted detector ``base``."""
    return f"{base}-mil"


def ablation_models(k: int, mil: bool = False) -> dict[str, str]:
    """The paper's Table 1 rows in order -> the model stem each evaluates (WorkDir.model);
    with ``mil``, the k-NN detector refined on its classification images before the oracle."""
    rows = {
        "classifier": CLASSIFIER,
        "bg-only": finetune_run(FINETUNES["bg-only"]),
        "all-layers": finetune_run(FINETUNES["all-layers"]),
        knn_name(k): adapted_stem(knn_name(k)),
        AVG_OFFSET: adapted_stem(AVG_OFFSET),
    }
    if mil:
        rows[mil_name(knn_name(k))] = adapted_stem(mil_name(knn_name(k)))
    return {**rows, "oracle": finetune_run(FINETUNES["oracle"])}
