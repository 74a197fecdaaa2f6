"""Mergeable accumulators: merging partials equals accumulating everything in one place."""

from __future__ import annotations

import random
from collections import Counter

import orjson
from ddsketch import DDSketch
from hypothesis import given, settings
from hypothesis import strategies as st

from shoppulse.streams.measures import Distinct, Measures, Quantiles, TopItems


def _split(items, parts):
    rng = random.Random(3)
    out = [[] for _ in range(parts)]
    for item in items:
        out[rng.randrange(parts)].append(item)
    return out


def _merged_distinct(values) -> Distinct:
    """Distinct over `values` split across 4 partitions, merged through JSON as between processes."""
    merged = Measures()
    for part in _split(values, 4):
        partial = Measures()
        for value in part:
            partial.distinct("v").add(value)
        merged.merge(Measures.load(orjson.loads(orjson.dumps(partial.dump()))))
    return merged["v"]


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


def test_distinct_counts_exactly_below_the_exact_limit_across_partitions():
    rng = random.Random(4)
    values = [f"visitor{rng.randrange(40_000)}" for _ in range(100_000)]
    assert _merged_distinct(values).count() == len(set(values))


def test_distinct_beyond_the_exact_limit_stays_within_the_error_bound():
    values = [f"visitor{i}" for i in range(300_000)]
    # Theta sketch relative standard error is 1 / sqrt(K); 3 standard errors.
    assert abs(_merged_distinct(values).count() - len(values)) <= 3 / (2**Distinct.LG_K) ** 0.5 * len(values)


def test_a_saturated_window_serialises_under_the_kafka_record_limit():
    """A window's state is one changelog record, and Kafka refuses records over 1 MiB by default
    (the worker would crash). Fill every unbounded accumulator of a traffic window far past its
    exact limit, in one partition and merged from four, and check the records stay well under."""
    rng = random.Random(5)
    whole, partials = Measures(), [Measures() for _ in range(4)]
    for i in range(400_000):
        visitor = f"{rng.getrandbits(64):016x}-{i}"
        pair = f"{rng.randrange(10**9)}>{rng.randrange(10**9)}"
        for measures in (whole, partials[i % 4]):
            measures.distinct("visitors").add(visitor)
            measures.top_items("view_pairs").add(pair)
    merged = Measures()
    for partial in partials:
        merged.merge(Measures.load(orjson.loads(orjson.dumps(partial.dump()))))
    limit = 1_048_576
    assert len(orjson.dumps(whole.dump())) < 0.75 * limit
    assert len(orjson.dumps(merged.dump())) < 0.75 * limit
    assert abs(merged["visitors"].count() - 400_000) <= 3 / (2**Distinct.LG_K) ** 0.5 * 400_000


durations = st.lists(st.one_of(st.just(0.0), st.floats(0, 1e10, allow_nan=False)), min_size=1, max_size=300)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(durations, min_size=1, max_size=5))
def test_quantiles_merged_through_json_equal_the_library_s_own_ddsketch(parts):
    """The sparse store against the library's dense `DDSketch` fed every value in one place."""
    reference = DDSketch(Quantiles.ACCURACY)
    merged = Measures()
    for part in parts:
        partial = Measures()
        for value in part:
            partial.quantiles("d").add(value)
            reference.add(value)
        merged.merge(Measures.load(orjson.loads(orjson.dumps(partial.dump()))))
    for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0):
        assert merged["d"].quantile(q) == reference.get_quantile_value(q)


def test_distinct_merged_in_any_order_and_read_between_merges_is_exact():
    values = [f"v{i}" for i in range(30_000)]
    parts = _split(values, 6)
    sketches = []
    for part in parts:
        d = Distinct()
        for value in part:
            d.add(value)
        sketches.append(Distinct.load(orjson.loads(orjson.dumps(d.dump()))))
    forward, backward = Distinct(), Distinct()
    for i, sketch in enumerate(sketches):
        forward.merge(sketch)
        assert forward.count() == sum(len(p) for p in parts[: i + 1])  # a read folds the merges so far
    for sketch in reversed(sketches):
        backward.merge(sketch)
    forward.add("v0")  # already counted
    forward.add("new")
    assert forward.count() == backward.count() + 1 == len(values) + 1
