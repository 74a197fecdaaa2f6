"""Mergeable accumulators: merging partials equals accumulating everything in one place."""

from __future__ import annotations

import random
from collections import Counter

from shoppulse.streams.measures import Measures, TopItems


def _split(items, parts):
    rng = random.Random(3)
    out = [[] for _ in range(parts)]
    for item in items:
        out[rng.randrange(parts)].append(item)
    return out


def test_top_items_merge_exactly_below_the_exact_limit():
    rng = random.Random(1)
    items = [(f"p{rng.randrange(2000)}", rng.randrange(1, 50)) for _ in range(20_000)]
    truth = Counter()
    for item, weight in items:
        truth[item] += weight
    merged = Measures()
    for part in _split(items, 4):
        partial = Measures()
        for item, weight in part:
            partial.top_items("x").add(item, weight)
        merged.merge(Measures.load(partial.dump()))  # through serialisation, as between processes
    expected = sorted(truth.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    assert merged["x"].top(20) == expected


def test_top_items_beyond_the_exact_limit_stay_within_the_error_bound():
    rng = random.Random(2)
    # A few heavy items among many light ones: more distinct items than the sketch holds exactly.
    items = [(f"heavy{rng.randrange(10)}", 40) for _ in range(2_000)]
    items += [(f"light{rng.randrange(50_000)}", 1) for _ in range(60_000)]
    truth = Counter()
    for item, weight in items:
        truth[item] += weight
    assert len(truth) > TopItems.EXACT_ITEMS
    merged = Measures()
    for part in _split(items, 4):
        partial = Measures()
        for item, weight in part:
            partial.top_items("x").add(item, weight)
        merged.merge(partial)
    tolerance = 3.5 / 2**TopItems.LG_MAX_K * sum(truth.values())
    top = merged["x"].top(10)
    assert {item for item, _ in top} == {f"heavy{i}" for i in range(10)}
    for item, estimate in top:
        assert abs(estimate - truth[item]) <= tolerance
    assert len(Measures({"x": merged["x"]}).dump()["x"]["$freq"]) < 200_000  # bounded state
