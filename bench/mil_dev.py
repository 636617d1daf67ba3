"""The development slice of ``lsda mil`` (docs/mil.md): held-out mAP on val1's set-A boxes,
which training never reads, for the k-NN detector and its refinements under several settings.
val2 is never scored here: settings are chosen on this slice, and reported on val2 by
``lsda run`` (bench/seeds.py).

python bench/mil_dev.py --data ROOT --work WORK [--grid '[{"lam": 0.001}, {"rounds": 1}]']

WORK: a finished ``lsda run`` (its ``mil`` split extracted). Each setting's detector is
``detector-knn-5-mil-devN.pt``; a re-run skips what is done.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from pipeline.data.category_sets import category_roles
from pipeline.detect.stage import run_detect
from pipeline.evaluate.stage import run_evaluate
from pipeline.extract.stage import extracted_with
from pipeline.mil.stage import run_mil
from pipeline.workdir import WorkDir, knn_name
from schemas.config import load_config

DEV_SPLIT = "val1"


def dev_map(data: str, work: str, models: dict[str, str], cfg) -> dict[str, tuple[float, float]]:
    """Held-out and trained mAP on val1 of each detector (name -> model URL). The trained
    figure is on boxes the fine-tune read (val1's set-B windows): it shows whether an option
    that moves shared layers (``[mil] fc7``) disturbs set B, not how set B generalises."""
    run_detect(data, work, models, split=DEV_SPLIT, post=cfg.detect, proposals=cfg.extract)
    set_b = category_roles(data, cfg.categories).set_b
    out = {}
    for name in models:
        result = run_evaluate(data, work, name, DEV_SPLIT, set_b)
        out[name] = (result["map_heldout"], result["map_trained"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--config", default="toyworld")
    p.add_argument("--grid", default="[{}]", help="JSON list of [mil] overrides")
    args = p.parse_args()
    cfg = load_config(args.config)
    cfg = dataclasses.replace(cfg, extract=extracted_with(args.work, DEV_SPLIT) or cfg.extract)
    wd, base = WorkDir(args.work), knn_name(cfg.run.k)
    models, settings = {base: wd.model(base)}, {base: "the k-NN detector"}
    for i, overrides in enumerate(json.loads(args.grid)):
        name = f"{base}-mil-dev{i}"
        mil = dataclasses.replace(cfg.mil, **overrides)
        summary = run_mil(args.data, args.work, mil, base=base, name=name)
        models[name], settings[name] = wd.model(name), json.dumps(overrides)
        cost = summary.get("cpu_seconds_per_category")
        print(f"{name}: {json.dumps(overrides)}, {cost} CPU s per category", flush=True)
    scores = dev_map(args.data, args.work, models, cfg)
    print(
        f"| detector | [mil] overrides | held-out mAP on {DEV_SPLIT} | relative to {base} "
        f"| trained mAP on {DEV_SPLIT} (seen in training) |"
    )
    print("|---|---|---|---|---|")
    held0 = scores[base][0]
    for name, (held, trained) in scores.items():
        print(
            f"| {name} | {settings[name]} | {100 * held:.1f} | {held / held0 - 1:+.1%} "
            f"| {100 * trained:.1f} |"
        )


if __name__ == "__main__":
    main()
