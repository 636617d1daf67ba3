"""Training-input mixing: shard dealing per pass, the extraction's cross-class order, and the
per-worker minibatch split (no Ray: pure functions)."""

import itertools
from collections import Counter

import pytest
import torch

from pipeline.extract.plan import mixed_order
from pipeline.train.data import worker_batch
from pipeline.train.stream import ShardStream, deal, pass_seed, split_minibatches

FILES = [f"part-{i:05d}.parquet" for i in range(10)]


def test_every_pass_deals_each_shard_to_exactly_one_worker():
    for key in range(5):
        seed = pass_seed(0, key)
        shares = [deal(FILES, r, 3, seed) for r in range(3)]
        assert sorted(f for s in shares for f in s) == FILES
        assert [len(s) for s in shares] == [4, 3, 3]


def test_passes_differ_and_a_seed_repeats():
    orders = {tuple(deal(FILES, 0, 1, pass_seed(0, key))) for key in range(6)}
    assert len(orders) == 6  # a new order every pass
    assert deal(FILES, 1, 2, pass_seed(7, 3)) == deal(FILES, 1, 2, pass_seed(7, 3))
    assert deal(FILES, 1, 2, pass_seed(7, 3)) != deal(FILES, 1, 2, pass_seed(8, 3))


def test_fewer_shards_than_workers_leaves_no_worker_empty():
    assert all(deal(FILES[:2], r, 4, pass_seed(0, 0)) for r in range(4))
    assert deal([], 0, 2) == []


def test_mixed_order_spreads_a_class_sorted_listing_over_every_shard():
    # ImageNet-like: 50 classes x 40 images, listed class by class
    items = [{"image_id": f"n{c:08d}/n{c:08d}_{i}"} for c in range(50) for i in range(40)]
    shard = 32
    sorted_classes = [len({it["image_id"][:9] for it in items[i : i + shard]}) for i in (0, 320)]
    assert max(sorted_classes) <= 2  # what training saw before: a class or two per shard
    mixed = mixed_order(items, seed=0)
    assert sorted(it["image_id"] for it in mixed) == sorted(it["image_id"] for it in items)
    per_shard = [
        len({it["image_id"][:9] for it in mixed[i : i + shard]})
        for i in range(0, 2000 - shard + 1, shard)
    ]
    assert min(per_shard) >= 15  # 32 draws from 50 equal classes: ~24 distinct on average
    assert mixed_order(items, seed=0) == mixed
    assert mixed_order(items, seed=1) != mixed


def test_minibatches_are_per_optimizer_step():
    assert worker_batch(128, 1) == 128 and worker_batch(128, 2) == 64
    assert worker_batch(96, 4, "bg_per_batch") == 24
    with pytest.raises(ValueError, match="bg_per_batch 96 .* 5 workers"):
        worker_batch(96, 5, "bg_per_batch")


def test_mixed_order_keeps_class_shares_in_every_part():
    items = [{"image_id": f"a/{i}"} for i in range(500)] + [
        {"image_id": f"b/{i}"} for i in range(500)
    ]
    halves = mixed_order(items, 3)[:500], mixed_order(items, 3)[500:]
    for half in halves:
        share = Counter(it["image_id"][0] for it in half)["a"] / 500
        assert 0.4 < share < 0.6


class _FakePasses(ShardStream):
    """Passes of batches with the given sizes, labels numbering the rows."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__(["part"], None, {}, 0, 0, 1)
        self.sizes, self.next_row = sizes, 0

    def one_pass(self, batch_size, key, shuffle_buffer):
        for n in self.sizes:
            yield {"label": torch.arange(self.next_row, self.next_row + n)}
            self.next_row += n


def test_a_passs_short_last_batch_joins_the_next_pass():
    stream = _FakePasses([4, 4, 3])  # 11 rows a pass, batches of 4
    batches = list(itertools.islice(stream.endless(4, (0,), 8, "test"), 8))
    assert all(len(b["label"]) == 4 for b in batches)
    seen = torch.cat([b["label"] for b in batches]).tolist()
    assert sorted(seen) == list(range(32))  # none twice, none dropped (row 32 is carried)


def test_a_share_smaller_than_a_batch_still_makes_batches():
    stream = _FakePasses([3])
    batches = list(itertools.islice(stream.endless(8, (0,), 8, "test"), 3))
    assert [len(b["label"]) for b in batches] == [8, 8, 8]


def test_an_empty_share_raises_instead_of_hanging_the_other_workers():
    with pytest.raises(RuntimeError, match="received no test rows"):
        next(_FakePasses([]).endless(4, (0,), 8, "test"))


def test_one_stream_splits_into_fg_and_bg_minibatches():
    bg_row = 9
    labels = torch.tensor([0, 9, 9, 9, 1, 9, 9, 9, 9, 2] * 20)  # 30% foreground
    stream = ({"label": labels[i : i + 16], "image": labels[i : i + 16]} for i in range(0, 200, 16))
    steps = list(split_minibatches(stream, bg_row, 4, 12, cap=64))
    assert len(steps) == 140 // 12  # background runs out first here
    for fg, bg in steps:
        assert len(fg["label"]) == 4 and (fg["label"] != bg_row).all()
        assert len(bg["label"]) == 12 and (bg["label"] == bg_row).all()
        assert torch.equal(fg["image"], fg["label"])  # columns stay aligned
