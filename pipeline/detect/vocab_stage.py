"""``lsda score-vocab``: one detector against its whole vocabulary (thousands of categories).

Ray Data actors load the detector once; per image, one forward pass gives the windows' fc7
features and ``pipeline.detect.vocab.VocabScorer`` applies the output layer chunk by chunk
with LSDA's large-vocabulary post-processing. With ``hierarchy``, internal WordNet nodes above the
vocabulary are scored too (best descendant). Outputs as ``lsda detect``'s, under
``WORK/detect/<name>/<split>/``; ``category_id`` is the 1-based position in
``vocabulary.json`` written beside them (categories in the detector's row order, then nodes).
"""

from __future__ import annotations

import json

import cv2
import torch

from pipeline import lineage
from pipeline.data.hierarchy import read_hierarchy
from pipeline.detect.fanout import images_ahead, score_images
from pipeline.detect.image_list import detect_image_list
from pipeline.detect.outputs import add_rows, new_rows, write_detections
from pipeline.detect.scoring import WindowFeeder
from pipeline.detect.vocab import VocabScorer
from pipeline.io import storage
from pipeline.model.checkpoints import load_model, load_payload
from pipeline.model.host_syncs import on_device
from pipeline.model.nets import CategoryMap
from pipeline.workdir import WorkDir
from schemas.config import ExtractConfig, ScoringConfig, VocabPostConfig, to_dict


def hierarchy_nodes(data: str, wnids: list[str]) -> tuple[list[str], list[tuple[int, int]]]:
    """Internal nodes above ``wnids`` (roots left out: they would match every window) and the
    (category, node) ancestry pairs."""
    h = read_hierarchy(data)
    ancestors = {w: {a for a in h.ancestors(w) if h.parents.get(a)} for w in wnids}
    nodes = sorted(set().union(*ancestors.values()) - set(wnids)) if wnids else []
    index = {n: i for i, n in enumerate(nodes)}
    pairs = [(i, index[a]) for i, w in enumerate(wnids) for a in sorted(ancestors[w]) if a in index]
    return nodes, pairs


class VocabActor:
    def __init__(
        self,
        url: str,
        name: str,
        post: VocabPostConfig,
        nodes: list[str],
        ancestry: list[tuple[int, int]],
        proposals: ExtractConfig,
        scoring: ScoringConfig = ScoringConfig(),
    ):
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        model, categories, payload = load_model(url)
        self.mean = payload["pixel_mean"]
        self.feeder = WindowFeeder(payload["input_size"], self.mean, scoring)
        self.model = self.feeder.prepare(model)
        out = self.model.output
        self.scorer = VocabScorer(
            out.weight.detach(), out.bias.detach(), post, ancestry, len(nodes)
        )
        self.columns = list(categories.wnids) + nodes
        self.ids = {w: i + 1 for i, w in enumerate(self.columns)}
        self.name, self.proposals, self.device = name, proposals, self.feeder.device

    @torch.no_grad()
    def __call__(self, batch: dict) -> dict:
        rows = new_rows()
        for image_id, image, boxes in images_ahead(batch, self.mean, self.proposals):
            feats = self.features(image, boxes)
            b, s, c = self.scorer.detect(feats, on_device(torch.from_numpy(boxes), self.device))
            found = torch.cat([b.float(), s[:, None].float(), c[:, None].float()], 1)
            found = found.cpu().numpy()  # one copy back (class ids < 2**24: exact in float32)
            wnids = [self.columns[int(j)] for j in found[:, 5]]
            add_rows(rows, self.name, image_id, found[:, :4], found[:, 4], wnids, self.ids)
        return rows

    def features(self, image, boxes) -> torch.Tensor:
        """fc7 features (windows, D) of the image's windows, float32 on the scoring device."""
        parts = self.feeder.map(image, boxes, lambda x: self.model.fc7_features(x).float())
        empty = torch.zeros(0, self.scorer.w.shape[1], device=self.device)
        return torch.cat(parts) if parts else empty


def run_score_vocab(
    data: str,
    work: str,
    model: str,
    name: str = "vocab",
    split: str | None = None,
    images: list[str] | None = None,
    post: VocabPostConfig = VocabPostConfig(),
    hierarchy: bool = False,
    actors: int = 2,
    draw: int = 0,
    proposals: ExtractConfig = ExtractConfig(),
    overwrite: bool = False,
    scoring: ScoringConfig = ScoringConfig(),
) -> dict:
    """Score ``split``'s proposals (or ``images``) against every category of ``model``."""
    split = split or "images"
    source = lineage.of_images(images) if images else lineage.of_extraction(work, split)
    inputs = {
        "model": [model, lineage.of(model)],
        "split": source,
        "post": to_dict(post),
        "hierarchy": hierarchy,
        "precision": scoring.resolved_precision,
    }
    out = WorkDir(work).detections(name, split)
    if not overwrite and lineage.is_current(out, inputs, f"score-vocab {name}"):
        return {"skipped": [name]}
    categories = CategoryMap(tuple(load_payload(model)["wnids"]))  # no network needed here
    nodes, ancestry = hierarchy_nodes(data, list(categories.wnids)) if hierarchy else ([], [])
    kwargs = {
        "url": model,
        "name": name,
        "post": post,
        "nodes": nodes,
        "ancestry": ancestry,
        "proposals": proposals,
        "scoring": scoring,
    }
    vocabulary = [{"id": i + 1, "wnid": w} for i, w in enumerate([*categories.wnids, *nodes])]
    storage.write_text(storage.join(out, "vocabulary.json"), json.dumps(vocabulary))
    if images:  # a user's images: quarantined when bad, scored in resumable shards
        summary = detect_image_list(
            work, [name], images, VocabActor, kwargs, actors, scoring.gpus, draw, inputs
        )[name]
    else:
        table, n_images = score_images(data, work, split, VocabActor, kwargs, actors, scoring.gpus)
        summary = write_detections(work, [name], split, table, n_images, draw, data)[name]
    lineage.record(out, inputs)
    return {
        **summary,
        "categories": categories.num_categories,
        "nodes": len(nodes),
        "name": name,
    }
