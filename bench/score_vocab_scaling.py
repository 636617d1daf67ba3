"""``lsda score-vocab`` throughput against the number of scoring actors (issue: the
large-vocabulary detector). Prints windows/s for each actor count and the ratio to one actor.

A built-in world with ``--leaves`` extra leaf categories (classification images only), its
val2 proposals extracted once, and a randomly initialised ``smallcnn`` over the whole
vocabulary: what is timed is ``run_score_vocab`` end to end through Ray Data (reading
proposals and images, warping, the network, the chunked output layer, LSDA's post-processing,
writing Parquet), once per actor count, in the same run. Scores are meaningless; the work is
the real one. On a 2-core machine two actors is the most that can help.

Usage: python bench/score_vocab_scaling.py [--scenes 240] [--leaves 2000] [--actors 1 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.data.categories import read_categories  # noqa: E402
from pipeline.data.hierarchy import read_hierarchy  # noqa: E402
from pipeline.detect.vocab_stage import run_score_vocab  # noqa: E402
from pipeline.extract.stage import run_extract  # noqa: E402
from pipeline.io.ray_env import start_local_ray  # noqa: E402
from pipeline.model.checkpoints import load_payload, save_model  # noqa: E402
from pipeline.model.nets import CategoryMap, get_model  # noqa: E402
from pipeline.workdir import WorkDir  # noqa: E402
from schemas.config import load_config, toyworld_config  # noqa: E402


def prepare(root: str, scenes: int, leaves: int) -> tuple[str, str, str, int]:
    """World, extracted val2, a vocabulary-wide model; returns (data, work, model, windows)."""
    from pipeline.toyworld.generate import generate

    data, work = f"{root}/data", f"{root}/work"
    cfg = toyworld_config(
        "quick", cls_images=1, det_train_scenes=1, val1_scenes=1, val2_scenes=scenes,
        leaf_categories=leaves, leaf_cls_images=1,
    )  # fmt: skip
    generate(data, cfg, progress=False)
    ext = load_config("configs/toyworld.yaml").extract
    summary = run_extract(data, work, "val2", ext, progress=False)
    det = [c.wnid for c in read_categories(data)]
    others = sorted(set(read_hierarchy(data).leaves()) - set(det))
    categories = CategoryMap(tuple(det + others))
    torch.manual_seed(0)
    net = get_model("smallcnn", categories.num_categories)
    url = WorkDir(work).model("vocab.pt")
    save_model(url, net, "smallcnn", categories, input_size=net.input_size,
               pixel_mean=list(ext.pixel_mean))  # fmt: skip
    windows = int(summary["proposals_per_image"] * summary["done"])
    return data, work, url, windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scenes", type=int, default=240)
    ap.add_argument("--leaves", type=int, default=2000)
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    start_local_ray(num_cpus=os.cpu_count(), log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        data, work, model, windows = prepare(tmp, args.scenes, args.leaves)
        k = len(load_payload(model)["wnids"])
        print(f"{args.scenes} images, {windows} windows, {k} categories, {os.cpu_count()} CPUs")
        rates = {}
        for n in args.actors:
            t0 = time.perf_counter()
            run_score_vocab(data, work, model, name=f"actors{n}", split="val2", actors=n)
            rates[n] = windows / (time.perf_counter() - t0)
            print(
                f"{n} actor(s): {rates[n]:.0f} windows/s ({rates[n] / rates[args.actors[0]]:.2f}x)"
            )


if __name__ == "__main__":
    main()
