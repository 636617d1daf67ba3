"""k-NN adaptation's neighbour metric (issue: the paper's protocol): the paper's (fc7 weight rows,
l2-normalised, Euclidean; ``pipeline.adapt.rows``) against the one used before, which also counted
the bias as a coordinate. The offset moves the whole row, bias included, under both.

On a finished ``lsda run``: adapts ``det-all-fcB.pt`` with each metric (k = 5), scores the
evaluation split and prints held-out mAP and how many neighbours the two metrics share.
python bench/neighbour_metric.py --data DATA --work WORK [--k 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.adapt.rows import adapt, apply_rows, with_bias  # noqa: E402
from pipeline.data.category_sets import held_back, set_b  # noqa: E402
from pipeline.detect.stage import run_detect  # noqa: E402
from pipeline.evaluate.stage import run_evaluate  # noqa: E402
from pipeline.io.ray_env import start_local_ray  # noqa: E402
from pipeline.model.checkpoints import load_model, save_model  # noqa: E402
from pipeline.workdir import WorkDir  # noqa: E402
from schemas.config import CategorySplit  # noqa: E402


def adapted(work: str, k: int, with_bias_metric: bool) -> tuple[str, torch.Tensor]:
    """Writes the adapted detector; returns its URL and the neighbours chosen."""
    cls_model, categories, _ = load_model(WorkDir(work).model("cls.pt"))
    det_model, _, payload = load_model(WorkDir(work).model("det-all-fcB.pt"))
    trained = set(payload["trained"])
    b_rows = categories.rows(payload["trained"])
    a_rows = categories.rows([w for w in categories.wnids if w not in trained])
    w_cls, w_det = with_bias(cls_model.output), with_bias(det_model.output)
    if with_bias_metric:  # a zero column last: adapt() then measures on weights + bias
        w_cls = torch.cat([w_cls, torch.zeros(len(w_cls), 1)], 1)
        w_det = torch.cat([w_det, torch.zeros(len(w_det), 1)], 1)
    result = adapt(w_cls[a_rows], w_cls[b_rows], w_det[b_rows], k)
    rows = result.rows[:, :-1] if with_bias_metric else result.rows
    apply_rows(det_model.output, a_rows, rows)
    name = f"knn{k}-{'fc7-bias' if with_bias_metric else 'fc7'}"
    url = WorkDir(work).model(f"detector-{name}.pt")
    save_model(url, det_model, payload["model"], categories, **{
        key: payload[key] for key in ("input_size", "pixel_mean", "set_b", "trained")
    })  # fmt: skip
    return url, result.neighbours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args()
    start_local_ray(num_cpus=2, log_to_driver=False)
    split = json.loads(open(f"{args.work}/report/metrics.json").read())["split"]
    sets = CategorySplit()
    b, held = set_b(args.data, sets), held_back(args.data, sets)
    results, neighbours = {}, {}
    for bias in (False, True):
        url, nn = adapted(args.work, args.k, bias)
        name = os.path.basename(url).removeprefix("detector-").removesuffix(".pt")
        run_detect(args.data, args.work, {name: url}, split=split, overwrite=True)
        results[name] = run_evaluate(args.data, args.work, name, split, set_b=b, held_back=held)
        neighbours[name] = nn
    a, c = neighbours.values()
    shared = sum(len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a, c, strict=True))
    print(
        f"k = {args.k}, {len(a)} categories without boxes; neighbours in common: "
        f"{shared} of {a.numel()}"
    )
    for name, m in results.items():
        print(f"{name}: held-out mAP {100 * m['map_heldout']:.2f}, all {100 * m['map_all']:.2f}")


if __name__ == "__main__":
    main()
