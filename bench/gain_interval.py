"""How sure is a row's gain? A bootstrap over the held-out categories of one evaluation.

The held-out mAP is a mean over set A's categories of per-category APs; with a few objects per
category in the evaluation split, it moves a lot with which categories happen to be there.
This resamples the categories (with replacement, seeded) and prints the relative gain of
``--row`` over ``--base`` on the whole set, its 95% interval, and how often a resample falls
below ``--goal``:

python bench/gain_interval.py --work WORK [--split val2] [--base knn-5] [--row knn-5-mil]

Reading a finished evaluation chooses nothing: use it to say how far a reported number can be
trusted, never to pick a setting on val2.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from pipeline.io import storage
from pipeline.workdir import WorkDir


def held_out_aps(work: str, row: str, split: str) -> dict[str, float]:
    """AP of every set-A category that has one: the categories ``map_heldout`` averages
    (``devkit.mean_ap`` leaves out those without an object in ``split``, stored as null)."""
    metrics = json.loads(storage.read_text(WorkDir(work).metrics(row, split)))
    return {
        c["wnid"]: c["ap"] for c in metrics["categories"] if c["set"] == "A" and c["ap"] is not None
    }


def gain_interval(
    base: dict[str, float], row: dict[str, float], resamples: int = 10000, seed: int = 0
) -> tuple[float, np.ndarray]:
    """The relative gain of ``row`` over ``base`` on their common categories, and the gains
    of ``resamples`` bootstrap resamples of those categories."""
    wnids = sorted(base.keys() & row.keys())
    a = np.array([base[w] for w in wnids])
    b = np.array([row[w] for w in wnids])
    picks = np.random.default_rng(seed).integers(0, len(wnids), (resamples, len(wnids)))
    return b.sum() / a.sum() - 1, b[picks].sum(1) / a[picks].sum(1) - 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True)
    p.add_argument("--split", default="val2")
    p.add_argument("--base", default="knn-5")
    p.add_argument("--row", default="knn-5-mil")
    p.add_argument("--goal", type=float, default=0.10, help="a relative gain, 0.10 = +10%%")
    args = p.parse_args()
    base = held_out_aps(args.work, args.base, args.split)
    row = held_out_aps(args.work, args.row, args.split)
    gain, resampled = gain_interval(base, row)
    lo, hi = np.quantile(resampled, [0.025, 0.975])
    below = float((resampled < args.goal).mean())
    print(
        f"{args.row} over {args.base} on {args.split} ({len(base.keys() & row.keys())} held-out "
        f"categories): {gain:+.1%}, 95% interval [{lo:+.1%}, {hi:+.1%}]; "
        f"{below:.0%} of resamples below {args.goal:+.0%}"
    )


if __name__ == "__main__":
    main()
