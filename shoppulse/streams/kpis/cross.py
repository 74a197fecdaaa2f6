"""Cross KPIs: the sales of a window joined with another family's measures of the same
window (revenue per visitor, hit rate), which `Context.other` carries."""

from __future__ import annotations

from ..measures import MICROS, Measures, TopItems
from .model import Context, Kpi, Value

# Which family each cross KPI needs, besides `sales`.
CROSS_NEEDS = {"revenue_per_visitor": "traffic", "hit_rate": "support"}


def _revenue_per_visitor(m: Measures, ctx: Context) -> list[Value]:
    traffic = ctx.other.get("traffic")
    if traffic is None:
        return []
    visitors = traffic["visitors"].count() if "visitors" in traffic else 0
    return [
        Value(
            "revenue_per_visitor", (v / MICROS) / visitors if visitors else None, {"currency": c}, v / MICROS, visitors
        )
        for c, v in sorted(m.get("revenue_micros", {}).items())
    ]


def _hit_rate(m: Measures, ctx: Context) -> list[Value]:
    support = ctx.other.get("support")
    if support is None:
        return []
    if "product_tickets" not in support or "product_units" not in m:
        return []
    units = m["product_units"]
    # Products with a ticket (all of them while the sketch is exact; else the most ticketed).
    ticketed = support["product_tickets"].top(TopItems.EXACT_ITEMS)
    rates = {p: (units.weight(p), n) for p, n in ticketed if n and units.weight(p)}
    ranked = sorted(rates.items(), key=lambda kv: (-kv[1][0] / kv[1][1], kv[0]))[: ctx.top_n]
    return [Value("hit_rate", u / n, {"item": p, "rank": str(i)}, u, n) for i, (p, (u, n)) in enumerate(ranked, 1)]


KPIS: tuple[Kpi, ...] = (
    Kpi(
        "revenue_per_visitor",
        "cross",
        "currency",
        "revenue / unique_visitors of the same window, per currency",
        "Shopify/GA4 revenue per user",
        _revenue_per_visitor,
        dims=("currency",),
        attribution="the window of the orders and visits",
    ),
    Kpi(
        "hit_rate",
        "cross",
        "ratio",
        "per product: units sold / tickets about it (top 20, 1 h)",
        "support contact rate per product",
        _hit_rate,
        insight=True,
    ),
)
