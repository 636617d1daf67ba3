"""Typed records returned by the readers in `pipeline/` (DESIGN §3).

Coordinates follow ILSVRC: pixels are 0-based and inclusive, so a box's width is
``xmax - xmin + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Category:
    """One detection category from ``map_det.txt`` / ``meta_det.mat``."""

    wnid: str
    index: int  # 1-based, as in the devkit
    name: str


@dataclass(frozen=True)
class Box:
    wnid: str
    xmin: int
    ymin: int
    xmax: int
    ymax: int

    @property
    def width(self) -> int:
        return self.xmax - self.xmin + 1

    @property
    def height(self) -> int:
        return self.ymax - self.ymin + 1


@dataclass(frozen=True)
class ImageAnnotation:
    """A detection image and its ground-truth boxes."""

    image_id: str  # file stem, e.g. ILSVRC2013_val_00000001
    split: str  # det-train | val
    image_url: str
    annotation_url: str
    width: int
    height: int
    boxes: tuple[Box, ...] = ()


@dataclass(frozen=True)
class ClsImage:
    """A classification image: a plain file, or a member of a per-synset tar.

    For tar members ``offset``/``size`` locate the member's bytes inside ``url`` so a later
    stage reads it with one ranged request instead of re-scanning the tar.
    """

    wnid: str
    name: str
    url: str
    offset: int = -1
    size: int = -1

    @property
    def in_tar(self) -> bool:
        return self.offset >= 0


@dataclass(frozen=True)
class Problem:
    """Something wrong with one input, reported instead of dropped (promise 4)."""

    url: str
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.url}: {self.kind}: {self.message}"


@dataclass
class Hierarchy:
    """WordNet is-a graph restricted to what ``wordnet.is_a.txt`` lists."""

    names: dict[str, str] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    parents: dict[str, list[str]] = field(default_factory=dict)

    def leaves(self) -> list[str]:
        """Synsets that appear in the graph and have no child, sorted."""
        nodes = set(self.children) | set(self.parents)
        return sorted(n for n in nodes if not self.children.get(n))

    def ancestors(self, wnid: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.parents.get(wnid, ()))
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.parents.get(node, ()))
        return seen

    def descendants(self, wnid: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.children.get(wnid, ()))
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.children.get(node, ()))
        return seen

    def siblings(self, wnid: str) -> set[str]:
        """Other children of any of ``wnid``'s parents (Hoiem's 'similar' categories)."""
        out: set[str] = set()
        for parent in self.parents.get(wnid, ()):
            out.update(self.children.get(parent, ()))
        out.discard(wnid)
        return out


class DataError(ValueError):
    """The strict readers' single error: names the file and the problem."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem
