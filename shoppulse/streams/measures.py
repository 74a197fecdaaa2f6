"""Mergeable accumulators: the pure state behind every KPI. No Faust, no I/O.

A window's state is a `Measures` bag: named accumulators that each partition fills on
its own and that merge exactly across partitions. KPIs (kpis/) are computed from the
merged bag, so numerators and denominators are always summed before a ratio is taken.

Accumulator kinds, chosen by the value stored under a name:
- int: counts, and money in integer micro-units (exact sums, whatever the merge order);
  a name starting with `max:` merges by maximum instead (the oldest ticket's age);
- dict[str, int]: counts by a label value (device, currency, product pair...);
- Distinct: distinct count (Apache DataSketches theta; exact below 2**LG_K entries);
- Quantiles: DDSketch with 0.5 % relative accuracy, one per label value;
- TopItems: heavy hitters by weight (DataSketches frequent items), for the insight lists,
  whose item space (products, product pairs) is unbounded.
"""

from __future__ import annotations

import base64
from typing import Any

import datasketches
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import Store

MICROS = 1_000_000


def to_micros(amount: float) -> int:
    """Money as integer micro-units, so sums are exact and order-independent."""
    return round(amount * MICROS)


class Distinct:
    """Distinct count of strings. Exact while under 2**LG_K distinct values per window."""

    LG_K = 16

    __slots__ = ("merged", "sketch", "union")

    def __init__(self) -> None:
        self.sketch = datasketches.update_theta_sketch(self.LG_K)  # values added here
        self.merged = None  # compact sketch of everything merged in from elsewhere
        # While merging: a union that every merge feeds, folded into `merged` when next read.
        # The merge stage merges one window over every partition: a union per merge would
        # re-insert everything merged so far each time.
        self.union = None

    def add(self, value: str) -> None:
        self.sketch.update(value)

    def merge(self, other: Distinct) -> None:
        union = self.union
        if union is None:
            union = self.union = datasketches.theta_union(self.LG_K)
            if self.merged is not None:
                union.update(self.merged)
                self.merged = None
        union.update(other.compact())

    def compact(self):
        if self.union is not None:
            self.merged = self.union.get_result()
            self.union = None
        if self.merged is None:
            # An update sketch retains up to ~1.9 K hashes before it rebuilds; trimming to K
            # bounds the serialised state (K hashes, ~400 KB compressed) at no cost in accuracy.
            self.sketch.trim()
            return self.sketch.compact()
        if self.sketch.is_empty():
            return self.merged
        union = datasketches.theta_union(self.LG_K)
        union.update(self.merged)
        union.update(self.sketch)
        return union.get_result()

    def count(self) -> int:
        return round(self.compact().get_estimate())

    def dump(self) -> dict:
        # Compressed serialisation: ~25 % smaller, and read back by the same deserialize.
        return {"$theta": base64.b64encode(self.compact().serialize(compress=True)).decode()}

    @classmethod
    def load(cls, data: dict) -> Distinct:
        distinct = cls()
        distinct.merged = datasketches.compact_theta_sketch.deserialize(base64.b64decode(data["$theta"]))
        return distinct


class SparseStore(Store):
    """A DDSketch store of its non-empty bins only. The library's `DenseStore` keeps every bin
    between the lowest and the highest key: durations from a second to days span ~1,250 bins at
    0.5 %, nearly all empty, and the merge stage loads, merges and dumps thousands of sketches a
    second (docs/performance.md, "Merger capacity")."""

    def __init__(self) -> None:
        super().__init__()
        self.bins: dict[int, float] = {}

    @classmethod
    def of_bins(cls, bins: dict[int, float]) -> SparseStore:
        store = cls()
        if bins:
            store.bins = bins
            store.count = sum(bins.values())
            store.min_key = min(bins)
            store.max_key = max(bins)
        return store

    def copy(self, store: SparseStore) -> None:
        self.bins = dict(store.bins)
        self.count = store.count
        self.min_key = store.min_key
        self.max_key = store.max_key

    def length(self) -> int:
        return len(self.bins)

    def add(self, key: int, weight: float = 1.0) -> None:
        self.bins[key] = self.bins.get(key, 0.0) + weight
        self.count += weight
        self.min_key = min(self.min_key, key)
        self.max_key = max(self.max_key, key)

    def key_at_rank(self, rank: float, lower: bool = True) -> int:
        running = 0.0
        for key in sorted(self.bins):
            running += self.bins[key]
            if (lower and running > rank) or (not lower and running >= rank + 1):
                return key
        return self.max_key

    def merge(self, store: SparseStore) -> None:
        bins = self.bins
        for key, count in store.bins.items():
            bins[key] = bins.get(key, 0.0) + count
        if store.count:
            self.count += store.count
            self.min_key = min(self.min_key, store.min_key)
            self.max_key = max(self.max_key, store.max_key)


class Quantiles:
    """DDSketch of non-negative durations; quantiles within 0.5 % relative error."""

    ACCURACY = 0.005
    _mapping = LogarithmicMapping(ACCURACY)

    __slots__ = ("sketch", "store")

    def __init__(self, store: SparseStore | None = None, zero_count: float = 0.0) -> None:
        self.store = store if store is not None else SparseStore()
        # Values are clamped to >= 0, so the negative store stays empty.
        self.sketch = BaseDDSketch(self._mapping, self.store, SparseStore(), zero_count)

    def add(self, value: float) -> None:
        self.sketch.add(max(value, 0.0))

    def merge(self, other: Quantiles) -> None:
        self.sketch.merge(other.sketch)

    def quantile(self, q: float) -> float | None:
        return self.sketch.get_quantile_value(q) if self.sketch.count else None

    def dump(self) -> dict:
        # Bins as (key, count) pairs plus the zero bucket: enough to rebuild the quantiles.
        return {"$dd": sorted([key, count] for key, count in self.store.bins.items()), "z": self.sketch._zero_count}

    @classmethod
    def load(cls, data: dict) -> Quantiles:
        return cls(SparseStore.of_bins({key: count for key, count in data["$dd"]}), data["z"])


class TopItems:
    """Items by total weight, bounded in size. Exact while the window holds at most
    `EXACT_ITEMS` distinct items; beyond that each weight is within
    3.5 / 2**LG_MAX_K of the window's total weight (Apache DataSketches frequent items).

    Beyond the exact range a purge drops every item at or under the median weight, so with
    flat weights (pairs seen once each) the sketch keeps few items and a top list can come out
    shorter than asked. 2**13 makes the exact range 6,144 items: the pairs of an order of up
    to 111 products (the online-retail sample has a 79-product invoice: 3,081 pairs, which
    2**12 cut to an 8-entry list). A saturated sketch serialises to about 140 KB."""

    LG_MAX_K = 13
    EXACT_ITEMS = 3 * 2**LG_MAX_K // 4

    __slots__ = ("sketch",)

    def __init__(self, sketch=None) -> None:
        self.sketch = sketch or datasketches.frequent_strings_sketch(self.LG_MAX_K)

    def add(self, item: str, weight: int = 1) -> None:
        self.sketch.update(item, weight)

    def merge(self, other: TopItems) -> None:
        self.sketch.merge(other.sketch)

    def weight(self, item: str) -> int:
        return self.sketch.get_estimate(item)

    def top(self, n: int) -> list[tuple[str, int]]:
        """The `n` heaviest items, heaviest first (ties by item)."""
        rows = self.sketch.get_frequent_items(datasketches.frequent_items_error_type.NO_FALSE_NEGATIVES, 0)
        return sorted(((item, estimate) for item, estimate, _, _ in rows), key=lambda r: (-r[1], r[0]))[:n]

    def dump(self) -> dict:
        return {"$freq": base64.b64encode(self.sketch.serialize()).decode()}

    @classmethod
    def load(cls, data: dict) -> TopItems:
        return cls(datasketches.frequent_strings_sketch.deserialize(base64.b64decode(data["$freq"])))


SKETCHES = (Distinct, Quantiles, TopItems)


class Measures(dict):
    """Named accumulators of one window (or one partial of it)."""

    def inc(self, name: str, by: int = 1) -> None:
        self[name] = self.get(name, 0) + by

    def inc_label(self, name: str, label: str, by: int = 1) -> None:
        counts = self.get(name)
        if counts is None:
            counts = self[name] = {}
        counts[label] = counts.get(label, 0) + by

    def distinct(self, name: str) -> Distinct:
        value = self.get(name)
        if value is None:
            value = self[name] = Distinct()
        return value

    def quantiles(self, name: str) -> Quantiles:
        value = self.get(name)
        if value is None:
            value = self[name] = Quantiles()
        return value

    def top_items(self, name: str) -> TopItems:
        value = self.get(name)
        if value is None:
            value = self[name] = TopItems()
        return value

    def merge(self, other: Measures) -> Measures:
        for name, value in other.items():
            mine = self.get(name)
            if mine is None:
                self[name] = _copy(value)
            elif isinstance(value, int):
                self[name] = max(mine, value) if name.startswith("max:") else mine + value
            elif isinstance(value, dict):
                for label, count in value.items():
                    mine[label] = mine.get(label, 0) + count
            else:
                mine.merge(value)
        return self

    def dump(self) -> dict[str, Any]:
        return {k: (v.dump() if isinstance(v, SKETCHES) else v) for k, v in self.items()}

    @classmethod
    def load(cls, data: dict[str, Any]) -> Measures:
        measures = cls()
        for name, value in data.items():
            if isinstance(value, dict) and "$theta" in value:
                value = Distinct.load(value)
            elif isinstance(value, dict) and "$dd" in value:
                value = Quantiles.load(value)
            elif isinstance(value, dict) and "$freq" in value:
                value = TopItems.load(value)
            measures[name] = value
        return measures


def _copy(value):
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, SKETCHES):
        fresh: Any = type(value)()  # of the value's own class, which mypy cannot pair with its merge()
        fresh.merge(value)
        return fresh
    return value
