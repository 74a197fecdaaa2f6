"""The catalogue's building blocks: compute functions from a family's merged `Measures`
(counts, ratios, exact means, capped label breakdowns, money per currency, sketched duration
quantiles with their exact means, top-N lists)."""

from __future__ import annotations

from collections.abc import Callable

from ..measures import MICROS, Measures
from .model import Context, Value


def ratio_value(key: str, num: int, den: int, dims: dict | None = None) -> Value:
    """num / den (None without a denominator), with both parts."""
    return Value(key, (num / den) if den else None, dims or {}, num, den)


def count(key: str, measure: str) -> Callable:
    return lambda m, ctx: [Value(key, m.get(measure, 0))]


def ratio(key: str, num: str, den: str) -> Callable:
    return lambda m, ctx: [ratio_value(key, m.get(num, 0), m.get(den, 0))]


def mean_seconds(key: str, sum_ms: str, n: str) -> Callable:
    def compute(m: Measures, ctx: Context) -> list[Value]:
        total, k = m.get(sum_ms, 0) / 1000, m.get(n, 0)
        return [Value(key, total / k if k else None, {}, total, k)]

    return compute


def capped(counts: dict[str, int], cap: int) -> dict[str, int]:
    """Keep the `cap` largest label values (ties by name); fold the rest into "other"."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[:cap])
    rest = sum(c for _, c in ranked[cap:])
    if rest:
        kept["other"] = kept.get("other", 0) + rest
    return kept


def by_label(key: str, measure: str, dim: str) -> Callable:
    def compute(m: Measures, ctx: Context) -> list[Value]:
        return [Value(key, c, {dim: label}) for label, c in capped(m.get(measure, {}), ctx.label_cap).items()]

    return compute


def money_by_currency(key: str, measure: str) -> Callable:
    return lambda m, ctx: [Value(key, v / MICROS, {"currency": c}) for c, v in sorted(m.get(measure, {}).items())]


def money_ratio_by_currency(key: str, num: str, den: str, den_scale: int = 1) -> Callable:
    def compute(m: Measures, ctx: Context) -> list[Value]:
        out = []
        dens = m.get(den, {})
        for currency, amount in sorted(m.get(num, {}).items()):
            n, d = amount / MICROS, dens.get(currency, 0) / den_scale
            out.append(Value(key, n / d if d else None, {"currency": currency}, n, d))
        return out

    return compute


QUANTILES = (0.5, 0.9)  # exported as the `quantile` label "0.5", "0.9" (Prometheus convention)


def _duration_groups(sketch_prefix: str, sum_ms: str, n: str, dims: tuple[str, ...], m: Measures) -> list[tuple]:
    """(dimensions, sketch name, sum in ms, count): overall, then by each dimension's labels."""
    groups: list[tuple] = [({}, sketch_prefix, m.get(sum_ms, 0), m.get(n, 0))]
    for dim in dims:
        sums, counts = m.get(f"{sum_ms}|{dim}", {}), m.get(f"{n}|{dim}", {})
        for label in sorted(counts):
            groups.append(({dim: label}, f"{sketch_prefix}|{dim}={label}", sums.get(label, 0), counts[label]))
    return groups


def quantiles(key: str, sketch_prefix: str, sum_ms: str, n: str, dims: tuple[str, ...]) -> Callable:
    """p50 and p90 (sketched) overall and by each dimension, in seconds, labelled `quantile`."""

    def compute(m: Measures, ctx: Context) -> list[Value]:
        out = []
        for base_dims, sketch_name, _total_ms, k in _duration_groups(sketch_prefix, sum_ms, n, dims, m):
            sketch = m.get(sketch_name)
            for q in QUANTILES:
                value = sketch.quantile(q) / 1000 if sketch is not None and k else None
                out.append(Value(key, value, {**base_dims, "quantile": str(q)}))
        return out

    return compute


def means(key: str, sketch_prefix: str, sum_ms: str, n: str, dims: tuple[str, ...]) -> Callable:
    """The exact mean (sum / count) overall and by each dimension, in seconds: the companion of `quantiles`."""

    def compute(m: Measures, ctx: Context) -> list[Value]:
        return [
            Value(key, (total_ms / 1000 / k) if k else None, base_dims, total_ms / 1000, k)
            for base_dims, _sketch, total_ms, k in _duration_groups(sketch_prefix, sum_ms, n, dims, m)
        ]

    return compute


def top_list(key: str, measure: str, scale: int = 1) -> Callable:
    def compute(m: Measures, ctx: Context) -> list[Value]:
        ranked = m[measure].top(ctx.top_n) if measure in m else []
        return [Value(key, v / scale, {"item": item, "rank": str(rank)}) for rank, (item, v) in enumerate(ranked, 1)]

    return compute
