"""The bootstrap of a row's relative gain over held-out categories (bench/gain_interval.py)."""

import numpy as np

from bench.gain_interval import gain_interval


def test_a_uniform_gain_has_no_spread_and_an_uneven_one_brackets_its_value():
    base = {f"n{i}": 0.1 + 0.01 * i for i in range(30)}
    gain, resampled = gain_interval(base, {w: 1.1 * ap for w, ap in base.items()}, 500)
    assert np.isclose(gain, 0.1) and np.allclose(resampled, 0.1)
    uneven = {w: ap * (1.5 if i % 2 else 0.8) for i, (w, ap) in enumerate(base.items())}
    gain, resampled = gain_interval(base, uneven, 2000)
    lo, hi = np.quantile(resampled, [0.025, 0.975])
    assert lo < gain < hi and hi - lo > 0.1
    again = gain_interval(base, uneven, 2000)[1]
    assert np.array_equal(resampled, again)  # seeded


def test_only_categories_both_rows_scored_count():
    gain, _ = gain_interval({"a": 0.2, "b": 0.4}, {"a": 0.3, "c": 0.9}, 10)
    assert np.isclose(gain, 0.5)
