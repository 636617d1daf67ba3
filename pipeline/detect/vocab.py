"""Scoring windows against a vocabulary of thousands of categories in bounded memory.

The output layer is applied in chunks of categories: ``scores = x @ W_chunk.T + b_chunk -
bg(x)`` for the fc7 features ``x`` of an image's windows. Each chunk is pruned at once (score
threshold, the best ``per_class`` windows of each category), so no windows x categories matrix
larger than one chunk ever exists, whatever the vocabulary (21K categories for full ImageNet).
The surviving candidates (at most ``per_image``) go through LSDA's large-vocabulary
post-processing: per-class NMS (0.1), cross-class NMS (0.4), at most ``max_classes`` classes.

Hierarchy: an internal WordNet node scores a window with the best score of its descendants.
Node scores are accumulated chunk by chunk (a running max) and then pruned and suppressed like
the categories', separately: a "dog" box does not suppress the "beagle" box it contains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.detect.nms import nms
from pipeline.detect.postprocess import first_per_class, nms_per_group, to_continuous
from schemas.config import VocabPostConfig


@dataclass
class Candidates:
    windows: torch.Tensor  # (M,) window index
    classes: torch.Tensor  # (M,) column: category i < K, internal node K + p
    scores: torch.Tensor  # (M,)

    @staticmethod
    def cat(parts: list[Candidates], device: torch.device | str = "cpu") -> Candidates:
        if not parts:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return Candidates(empty, empty, torch.zeros(0, device=device))
        fields = ("windows", "classes", "scores")
        return Candidates(*(torch.cat([getattr(p, f) for p in parts]) for f in fields))

    def take(self, idx: torch.Tensor) -> Candidates:
        return Candidates(self.windows[idx], self.classes[idx], self.scores[idx])


def prune(scores: torch.Tensor, first_class: int, cfg: VocabPostConfig) -> Candidates:
    """The best ``per_class`` windows of every column of ``scores`` (N, C) above threshold."""
    w, c = (scores >= cfg.score_threshold).nonzero(as_tuple=True)
    s = scores[w, c]
    order = s.argsort(descending=True, stable=True)
    keep = first_per_class(order, c, cfg.per_class)
    return Candidates(w[keep], c[keep] + first_class, s[keep])


class VocabScorer:
    """One detector's output layer over K categories (+ background), and optionally the
    internal nodes of a hierarchy given as (category, node) ancestry pairs."""

    def __init__(
        self,
        weight: torch.Tensor,  # (K + 1, D), background row last
        bias: torch.Tensor,  # (K + 1,)
        cfg: VocabPostConfig = VocabPostConfig(),
        ancestry: list[tuple[int, int]] = (),  # (category index, node index) pairs
        num_nodes: int = 0,
    ):
        self.w, self.b = weight[:-1], bias[:-1]
        self.w_bg, self.b_bg = weight[-1], bias[-1]
        self.cfg, self.num_nodes = cfg, num_nodes
        pairs = torch.tensor(list(ancestry), dtype=torch.long, device=weight.device).reshape(-1, 2)
        self.pair_cat, self.pair_node = pairs[:, 0], pairs[:, 1]

    @property
    def num_categories(self) -> int:
        return self.w.shape[0]

    def chunks(self, feats: torch.Tensor):
        """(first category, scores (N, chunk)) with the background subtracted."""
        bg = feats @ self.w_bg + self.b_bg
        for c0 in range(0, self.num_categories, self.cfg.chunk):
            c1 = min(c0 + self.cfg.chunk, self.num_categories)
            yield c0, torch.addmm(self.b[c0:c1], feats, self.w[c0:c1].T) - bg[:, None]

    def candidates(self, feats: torch.Tensor) -> tuple[Candidates, torch.Tensor]:
        """Pruned candidates of categories and nodes; and the node scores (N, P)."""
        n = feats.shape[0]
        nodes = torch.full((n, self.num_nodes), float("-inf"), device=feats.device)
        parts = []
        for c0, scores in self.chunks(feats):
            parts.append(prune(scores, c0, self.cfg))
            sel = (self.pair_cat >= c0) & (self.pair_cat < c0 + scores.shape[1])
            if self.num_nodes and sel.any():
                src = scores[:, self.pair_cat[sel] - c0]
                index = self.pair_node[sel].expand(n, -1)
                nodes.scatter_reduce_(1, index, src, reduce="amax")
        if self.num_nodes and n:
            parts.append(prune(nodes, self.num_categories, self.cfg))
        return Candidates.cat(parts, feats.device), nodes

    def detect(self, feats: torch.Tensor, boxes: torch.Tensor):
        """(boxes, scores, columns) after pruning, per-class and cross-class NMS."""
        return self.finish(self.candidates(feats)[0], boxes)

    def finish(self, cand: Candidates, boxes: torch.Tensor):
        """The best ``per_image`` candidates through NMS and the class limit."""
        if len(cand.scores) > self.cfg.per_image:
            cand = cand.take(cand.scores.topk(self.cfg.per_image).indices)
        return suppress(boxes, cand, self.num_categories, self.cfg)


def suppress(boxes: torch.Tensor, cand: Candidates, num_categories: int, cfg: VocabPostConfig):
    """Per-class NMS, then cross-class NMS and the class limit within each level."""
    b = to_continuous(boxes[cand.windows].float())
    keep = nms_per_group(b, cand.scores, cand.classes, cfg.class_nms)
    level = (cand.classes[keep] >= num_categories).long()
    keep = keep[nms_per_group(b[keep], cand.scores[keep], level, cfg.cross_nms)]
    keep = keep[_top_classes(cand.classes[keep], num_categories, cfg.max_classes)]
    return boxes[cand.windows[keep]], cand.scores[keep], cand.classes[keep]


def _top_classes(classes: torch.Tensor, num_categories: int, limit: int) -> torch.Tensor:
    """Mask of detections (in descending score order) of the first ``limit`` classes of each
    level to appear."""
    seen: dict[bool, list[int]] = {False: [], True: []}
    mask = []
    for c in classes.tolist():  # one transfer; a few hundred detections at most
        level = seen[c >= num_categories]
        if c not in level and len(level) < limit:
            level.append(c)
        mask.append(c in level)
    return torch.tensor(mask, dtype=torch.bool, device=classes.device)


def naive_detect(
    feats: torch.Tensor,
    boxes: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    cfg: VocabPostConfig,
):
    """The obvious way, for the bench and tests: the full windows x categories score matrix,
    then ``naive_post``."""
    logits = feats @ weight.T + bias
    return naive_post(logits[:, :-1] - logits[:, -1:], boxes, cfg)


def naive_post(scores: torch.Tensor, boxes: torch.Tensor, cfg: VocabPostConfig):
    """A per-class loop of threshold + NMS, then cross-class NMS and the class limit."""
    cont = to_continuous(boxes.float())
    found = []
    for c in range(scores.shape[1]):
        ok = torch.nonzero(scores[:, c] >= cfg.score_threshold)[:, 0]
        if len(ok):
            kept = ok[nms(cont[ok], scores[ok, c], cfg.class_nms)]
            found.append(Candidates(kept, torch.full_like(kept, c), scores[kept, c]))
    cand = Candidates.cat(found)
    order = cand.scores.argsort(descending=True, stable=True)
    cand = cand.take(order)
    keep = nms(cont[cand.windows], cand.scores, cfg.cross_nms)
    keep = keep[_top_classes(cand.classes[keep], scores.shape[1], cfg.max_classes)]
    return boxes[cand.windows[keep]], cand.scores[keep], cand.classes[keep]
