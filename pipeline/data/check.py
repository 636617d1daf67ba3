"""``lsda check-data``: read a dataset through every reader and summarise what was found."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pipeline.data import layout
from pipeline.data.categories import read_categories
from pipeline.data.cls_reader import read_cls_images
from pipeline.data.det_reader import read_det_split
from pipeline.data.hierarchy import read_hierarchy
from pipeline.io import storage
from schemas.records import Category, DataError, Problem


@dataclass
class SplitSummary:
    images: int = 0
    objects: int = 0
    objects_per_category: Counter = field(default_factory=Counter)


@dataclass
class DatasetReport:
    root: str
    categories: list[Category] = field(default_factory=list)
    splits: dict[str, SplitSummary] = field(default_factory=dict)
    cls_images: Counter = field(default_factory=Counter)
    hierarchy_nodes: int = 0
    hierarchy_leaves: int = 0
    problems: list[Problem] = field(default_factory=list)

    def categories_without(self, split: str) -> list[str]:
        counts = self.splits[split].objects_per_category if split in self.splits else Counter()
        return [c.wnid for c in self.categories if counts[c.wnid] == 0]

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "categories": len(self.categories),
            "splits": {
                k: {"images": v.images, "objects": v.objects} for k, v in self.splits.items()
            },
            "cls_images": sum(self.cls_images.values()),
            "cls_categories": len(self.cls_images),
            "hierarchy_nodes": self.hierarchy_nodes,
            "hierarchy_leaves": self.hierarchy_leaves,
            "problems": [p.__dict__ for p in self.problems],
        }


def inspect_dataset(root: str) -> DatasetReport:
    report = DatasetReport(root)
    try:
        report.categories = read_categories(root)
    except DataError as exc:
        report.problems.append(exc.problem)
    known = {c.wnid for c in report.categories} or None
    splits = ["det-train", "val"]
    splits += [
        s for s in ("val1", "val2") if storage.exists(storage.join(root, layout.split_file(s)))
    ]
    for split in splits:
        result = read_det_split(root, split, known)
        summary = SplitSummary(images=len(result.annotations))
        for ann in result.annotations:
            summary.objects += len(ann.boxes)
            summary.objects_per_category.update(b.wnid for b in ann.boxes)
        report.splits[split] = summary
        report.problems += result.problems + result.pending
    cls = read_cls_images(root)
    report.cls_images.update(img.wnid for img in cls.images)
    report.problems += cls.problems
    try:
        hier = read_hierarchy(root)
        report.hierarchy_nodes = len(set(hier.children) | set(hier.parents))
        report.hierarchy_leaves = len(hier.leaves())
    except DataError as exc:
        report.problems.append(exc.problem)
    # val1/val2 re-read val's files: report each problem once.
    report.problems = list(dict.fromkeys(report.problems))
    return report


def format_report(report: DatasetReport, max_problems: int = 50) -> str:
    lines = [f"dataset {report.root}", f"  detection categories: {len(report.categories)}"]
    for split, s in report.splits.items():
        lines.append(
            f"  {split:<9} {s.images:>7} images {s.objects:>8} objects "
            f"{len(s.objects_per_category):>5} categories with boxes"
        )
    n_cls = sum(report.cls_images.values())
    lines.append(f"  cls       {n_cls:>7} images in {len(report.cls_images)} synsets")
    lines.append(f"  hierarchy {report.hierarchy_nodes} nodes, {report.hierarchy_leaves} leaves")
    if "det-train" in report.splits:
        missing = report.categories_without("det-train")
        lines.append(f"  categories without DET train boxes (set A): {len(missing)}")
    no_cls = [c.wnid for c in report.categories if report.cls_images[c.wnid] == 0]
    if no_cls:
        lines.append(f"  detection categories without cls images: {', '.join(no_cls[:20])}")
    lines.append(f"  problems: {len(report.problems)}")
    by_kind = Counter(p.kind for p in report.problems)
    lines += [f"    {kind}: {n}" for kind, n in sorted(by_kind.items())]
    lines += [f"    {p}" for p in report.problems[:max_problems]]
    if len(report.problems) > max_problems:
        lines.append(f"    … and {len(report.problems) - max_problems} more (--json lists all)")
    return "\n".join(lines)
