"""The KPI catalogue: every KPI once, with its formula, source definition and attribution.

docs/kpis.md documents this list (tests/test_docs.py checks it), the Prometheus metric
names come from it, and the exporters and tests read it. Each KPI is computed from the
merged `Measures` of one window of one family:

- `traffic`  clickstream events, attributed to the event's window;
- `sessions` session outcomes, attributed to the window where the session started;
- `sales`    order events;
- `support`  ticket events; durations count in the window where they end;
- `cross`    KPIs joining two families of the same window (revenue per visitor, hit rate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .measures import MICROS, Measures, TopItems

FAMILIES = ("traffic", "sessions", "sales", "support")


@dataclass(frozen=True)
class Value:
    kpi: str
    value: float | None
    dimensions: dict[str, str] = field(default_factory=dict)
    numerator: float | None = None
    denominator: float | None = None


@dataclass(frozen=True)
class Counted:
    """A measure exported as the Prometheus counter `shoppulse_<name>_total`. A measure that
    is a dict by label value (revenue by currency) becomes a counter with that `label`."""

    name: str
    measure: str
    label: str | None = None
    scale: int = 1  # micro-units or milliseconds per base unit


@dataclass(frozen=True)
class Kpi:
    key: str
    family: str  # traffic | sessions | sales | support | cross
    unit: str  # count | ratio | seconds | currency | average | score | tickets (a snapshot)
    formula: str
    source: str
    compute: Callable[[Measures, Context], list[Value]]
    attribution: str = "the window of the event's `ts`"
    # Measures exported as Prometheus counters: a name (`shoppulse_<measure>_total`) or a `Counted`.
    counters: tuple[str | Counted, ...] = ()
    goal: tuple[str, float] | None = None  # (">=" | "<=", target) default goal, overridable
    insight: bool = False  # a top-N list: kpi-results only, never a metric
    dims: tuple[str, ...] = ()  # dimension labels its values may carry (bounded)
    money_sum: bool = False  # a sum of money over the window (revenue), not a ratio (AOV)

    @property
    def metric(self) -> str:
        """Prometheus gauge for the last closed window. Counts and money sums get `_per_window`
        so they never clash with the counter `shoppulse_<name>_total` of the same measure."""
        if self.unit == "ratio":
            return f"shoppulse_{self.key.removesuffix('_rate')}_ratio"
        if self.unit == "count" or self.money_sum:
            return f"shoppulse_{self.key}_per_window"
        return f"shoppulse_{self.key}"  # seconds keys end in _seconds; currency, score and average have no unit


@dataclass
class Context:
    label_cap: int = 8
    top_n: int = 20
    other: dict[str, Measures] = field(default_factory=dict)  # the other families' merged measures, for `cross`


# ------------------------------------------------------------------ helpers


def _ratio(key: str, num: int, den: int, dims: dict | None = None) -> Value:
    return Value(key, (num / den) if den else None, dims or {}, num, den)


def count(key: str, measure: str) -> Callable:
    return lambda m, ctx: [Value(key, m.get(measure, 0))]


def ratio(key: str, num: str, den: str) -> Callable:
    return lambda m, ctx: [_ratio(key, m.get(num, 0), m.get(den, 0))]


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


def _gross_margin(m: Measures, ctx: Context) -> list[Value]:
    """Per currency with revenue; None where no order of that currency was fully costed."""
    profits, costed = m.get("profit_micros", {}), m.get("costed_revenue_micros", {})
    out = []
    for currency in sorted(m.get("revenue_micros", {})):
        profit, revenue = profits.get(currency, 0) / MICROS, costed.get(currency, 0) / MICROS
        out.append(
            Value("gross_margin", profit / revenue if revenue else None, {"currency": currency}, profit, revenue)
        )
    return out


def _nps(m: Measures, ctx: Context) -> list[Value]:
    promoters, detractors, n = m.get("nps_promoters", 0), m.get("nps_detractors", 0), m.get("nps_responses", 0)
    return [Value("nps", 100 * (promoters - detractors) / n if n else None, {}, promoters - detractors, n)]


def _oldest_unanswered(m: Measures, ctx: Context) -> list[Value]:
    oldest = m.get("max:oldest_unanswered_age_ms")
    return [Value("oldest_unanswered_ticket_age_seconds", oldest / 1000 if oldest is not None else 0.0)]


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


GA4 = "GA4"
SESSION_START = "the window where the session started; final once the session has ended"
DURATION_END = "the window where the duration ends"

CATALOGUE: tuple[Kpi, ...] = (
    # ---------------------------------------------------------------- traffic
    Kpi(
        "sessions",
        "traffic",
        "count",
        "sessions started in the window",
        "GA4 `sessions` (30 min inactivity split)",
        count("sessions", "sessions"),
        attribution="the window of the session's first event",
        counters=("sessions",),
    ),
    Kpi(
        "sessions_by_device",
        "traffic",
        "count",
        "sessions started, by `device` (top N + other)",
        "GA4 device category",
        by_label("sessions_by_device", "sessions_by_device", "device"),
        dims=("device",),
        attribution="the window of the session's first event",
    ),
    Kpi(
        "sessions_by_source",
        "traffic",
        "count",
        "sessions started, by `source` (top N + other)",
        "GA4 session source",
        by_label("sessions_by_source", "sessions_by_source", "source"),
        dims=("source",),
        attribution="the window of the session's first event",
    ),
    Kpi(
        "unique_visitors",
        "traffic",
        "count",
        "distinct visitor_id over all events (theta sketch, exact below 65,536)",
        "GA4 `totalUsers`",
        lambda m, ctx: [Value("unique_visitors", m["visitors"].count() if "visitors" in m else 0)],
    ),
    Kpi(
        "page_views",
        "traffic",
        "count",
        "page_view + product_view events",
        "GA4 `screenPageViews`",
        count("page_views", "page_views"),
        counters=("page_views",),
    ),
    Kpi(
        "new_visitor_share",
        "traffic",
        "ratio",
        "sessions of first-time visitors / sessions (`is_new_visitor`, else first sight of visitor_id)",
        "GA4 `newUsers` / sessions",
        ratio("new_visitor_share", "new_visitor_sessions", "sessions"),
        attribution="the window of the session's first event",
        counters=("new_visitor_sessions",),
    ),
    Kpi(
        "promo_ctr",
        "traffic",
        "ratio",
        "promo_click / promo_view events",
        "GA4 promotion CTR",
        ratio("promo_ctr", "promo_clicks", "promo_views"),
        counters=("promo_clicks", "promo_views"),
    ),
    Kpi(
        "email_ctr",
        "traffic",
        "ratio",
        "email_click / email_open events",
        "email click-to-open rate",
        ratio("email_ctr", "email_clicks", "email_opens"),
        counters=("email_clicks", "email_opens"),
    ),
    *(
        Kpi(key, "traffic", "count", f"{event} events", "event count", count(key, key), counters=(key,))
        for key, event in (
            ("newsletter_signups", "newsletter_signup"),
            ("sms_signups", "sms_signup"),
            ("unsubscribes", "unsubscribe"),
            ("chats_started", "chat_start"),
            ("searches", "search"),
            ("reviews_submitted", "review_submitted"),
        )
    ),
    Kpi(
        "product_view_pairs",
        "traffic",
        "count",
        "consecutive product views within a session (top 20, 1 h)",
        "Shopify 'frequently viewed together'",
        top_list("product_view_pairs", "view_pairs"),
        insight=True,
        attribution="the window of the second view",
    ),
    # --------------------------------------------------------------- sessions
    Kpi(
        "pages_per_session",
        "sessions",
        "average",
        "page views of the sessions started / those sessions",
        "GA4 `screenPageViewsPerSession`",
        ratio("pages_per_session", "session_views", "ended_sessions"),
        attribution=SESSION_START,
        counters=("session_views", "ended_sessions"),
    ),
    Kpi(
        "avg_session_duration_seconds",
        "sessions",
        "seconds",
        "mean of (last ts - first ts) over those sessions",
        "GA4 `averageSessionDuration`",
        mean_seconds("avg_session_duration_seconds", "session_duration_ms", "ended_sessions"),
        attribution=SESSION_START,
        counters=(Counted("session_duration_seconds", "session_duration_ms", scale=1000),),
    ),
    Kpi(
        "bounce_rate",
        "sessions",
        "ratio",
        "sessions not engaged / sessions; engaged = duration > 10 s, or >= 2 views, or a purchase",
        "GA4 `bounceRate` (1 - engagement rate)",
        lambda m, ctx: [
            _ratio("bounce_rate", m.get("ended_sessions", 0) - m.get("engaged_sessions", 0), m.get("ended_sessions", 0))
        ],
        attribution=SESSION_START,
        counters=("engaged_sessions",),
        goal=("<=", 0.6),
    ),
    Kpi(
        "add_to_cart_rate",
        "sessions",
        "ratio",
        "sessions with add_to_cart / sessions",
        "GA4 session add-to-cart rate",
        ratio("add_to_cart_rate", "cart_sessions", "ended_sessions"),
        attribution=SESSION_START,
        counters=("cart_sessions",),
    ),
    Kpi(
        "conversion_rate",
        "sessions",
        "ratio",
        "sessions with a purchase / sessions",
        "GA4 session key-event rate (purchase); Shopify conversion rate (sessions as denominator)",
        ratio("conversion_rate", "converted_sessions", "ended_sessions"),
        attribution=SESSION_START,
        counters=("converted_sessions",),
        goal=(">=", 0.01),
    ),
    Kpi(
        "cart_abandonment_rate",
        "sessions",
        "ratio",
        "sessions with add_to_cart and no purchase / sessions with add_to_cart",
        "Baymard / Shopify cart abandonment",
        ratio("cart_abandonment_rate", "abandoned_cart_sessions", "cart_sessions"),
        attribution=SESSION_START,
        counters=("abandoned_cart_sessions",),
        goal=("<=", 0.85),
    ),
    Kpi(
        "checkout_abandonment_rate",
        "sessions",
        "ratio",
        "sessions with begin_checkout and no purchase / sessions with begin_checkout",
        "Shopify checkout abandonment",
        ratio("checkout_abandonment_rate", "abandoned_checkout_sessions", "checkout_sessions"),
        attribution=SESSION_START,
        counters=("checkout_sessions", "abandoned_checkout_sessions"),
    ),
    # ------------------------------------------------------------------ sales
    Kpi(
        "orders", "sales", "count", "orders placed", "Shopify `orders`", count("orders", "orders"), counters=("orders",)
    ),
    Kpi(
        "revenue",
        "sales",
        "currency",
        "sum of quantity x unit_price - discount (no tax, no shipping), per currency",
        "Shopify net sales before returns",
        money_by_currency("revenue", "revenue_micros"),
        dims=("currency",),
        money_sum=True,
        counters=(Counted("revenue", "revenue_micros", "currency", MICROS),),
    ),
    Kpi(
        "average_order_value",
        "sales",
        "currency",
        "revenue / orders, per currency",
        "Shopify AOV",
        money_ratio_by_currency("average_order_value", "revenue_micros", "orders_by_currency"),
        dims=("currency",),
        counters=(Counted("orders_by_currency", "orders_by_currency", "currency"),),
    ),
    Kpi(
        "units_per_order",
        "sales",
        "average",
        "units / orders",
        "Shopify units per transaction",
        ratio("units_per_order", "units", "orders"),
        counters=("units",),
    ),
    Kpi(
        "gross_profit",
        "sales",
        "currency",
        "revenue - cost over orders where every item has a unit_cost",
        "Shopify gross profit",
        money_by_currency("gross_profit", "profit_micros"),
        dims=("currency",),
        money_sum=True,
        # Profit can be negative, and a counter only goes up: export its parts instead.
        counters=(
            Counted("costed_revenue", "costed_revenue_micros", "currency", MICROS),
            Counted("cost", "cost_micros", "currency", MICROS),
        ),
    ),
    Kpi(
        "gross_margin",
        "sales",
        "ratio",
        "gross_profit / revenue of those orders",
        "Shopify gross margin",
        _gross_margin,
        dims=("currency",),
    ),
    Kpi(
        "cancellations",
        "sales",
        "count",
        "order_cancelled events",
        "Shopify cancelled orders",
        count("cancellations", "cancellations"),
        counters=("cancellations",),
    ),
    Kpi(
        "refunds",
        "sales",
        "count",
        "order_refunded events",
        "Shopify returns",
        count("refunds", "refunds"),
        counters=("refunds",),
    ),
    Kpi(
        "refund_amount",
        "sales",
        "currency",
        "sum of refund_amount, per currency",
        "Shopify returns amount",
        money_by_currency("refund_amount", "refund_micros"),
        dims=("currency",),
        money_sum=True,
        counters=(Counted("refund_amount", "refund_micros", "currency", MICROS),),
    ),
    Kpi(
        "refund_rate",
        "sales",
        "ratio",
        "refunds / orders",
        "Shopify return rate",
        ratio("refund_rate", "refunds", "orders"),
    ),
    Kpi(
        "new_customer_orders",
        "sales",
        "count",
        "orders of first-time customers (`is_first_order`, else first sight)",
        "Shopify first-time customers",
        count("new_customer_orders", "new_customer_orders"),
        counters=("new_customer_orders",),
    ),
    Kpi(
        "returning_customer_orders",
        "sales",
        "count",
        "orders of returning customers",
        "Shopify returning customers",
        count("returning_customer_orders", "returning_customer_orders"),
        counters=("returning_customer_orders",),
    ),
    Kpi(
        "returning_customer_rate",
        "sales",
        "ratio",
        "returning / (returning + new)",
        "Shopify returning customer rate",
        lambda m, ctx: [
            _ratio(
                "returning_customer_rate",
                m.get("returning_customer_orders", 0),
                m.get("returning_customer_orders", 0) + m.get("new_customer_orders", 0),
            )
        ],
    ),
    Kpi(
        "top_products",
        "sales",
        "currency",
        "products by revenue (top 20, 1 h)",
        "Shopify top products",
        top_list("top_products", "product_revenue_micros", MICROS),
        insight=True,
    ),
    Kpi(
        "product_affinity",
        "sales",
        "count",
        "product pairs bought in the same order (top 20, 1 h)",
        "market-basket co-occurrence",
        top_list("product_affinity", "product_pairs"),
        insight=True,
    ),
    # ---------------------------------------------------------------- support
    Kpi(
        "tickets_created",
        "support",
        "count",
        "tickets created",
        "Zendesk `Tickets created`",
        count("tickets_created", "tickets_created"),
        counters=("tickets_created",),
    ),
    Kpi(
        "tickets_created_by_channel",
        "support",
        "count",
        "tickets created by channel (top N + other)",
        "Zendesk tickets by channel",
        by_label("tickets_created_by_channel", "tickets_by_channel", "channel"),
        dims=("channel",),
    ),
    Kpi(
        "tickets_created_by_category",
        "support",
        "count",
        "tickets created by category (top N + other)",
        "Zendesk tickets by form/category",
        by_label("tickets_created_by_category", "tickets_by_category", "category"),
        dims=("category",),
    ),
    Kpi(
        "first_response_seconds",
        "support",
        "seconds",
        "created -> first public agent reply: p50 and p90 (DDSketch, `quantile` 0.5 and 0.9), overall, by channel and by priority",
        "Zendesk Explore `First reply time`",
        quantiles("first_response_seconds", "frt", "frt_sum_ms", "first_replies", ("channel", "priority")),
        dims=("quantile", "channel", "priority"),
        attribution=DURATION_END,
        counters=("first_replies",),
        goal=("<=", 3600.0),
    ),
    Kpi(
        "first_response_mean_seconds",
        "support",
        "seconds",
        "created -> first public agent reply: exact mean, overall, by channel and by priority",
        "Zendesk Explore `First reply time` (average)",
        means("first_response_mean_seconds", "frt", "frt_sum_ms", "first_replies", ("channel", "priority")),
        dims=("channel", "priority"),
        attribution=DURATION_END,
    ),
    Kpi(
        "resolution_seconds",
        "support",
        "seconds",
        "created -> solved: p50 and p90 (DDSketch, `quantile` 0.5 and 0.9)",
        "Zendesk Explore `Full resolution time`",
        quantiles("resolution_seconds", "resolution", "resolution_sum_ms", "resolutions", ()),
        dims=("quantile",),
        attribution=DURATION_END,
        counters=("solves",),
    ),
    Kpi(
        "resolution_mean_seconds",
        "support",
        "seconds",
        "created -> solved: exact mean",
        "Zendesk Explore `Full resolution time` (average)",
        means("resolution_mean_seconds", "resolution", "resolution_sum_ms", "resolutions", ()),
        attribution=DURATION_END,
    ),
    Kpi(
        "open_tickets",
        "support",
        "tickets",
        "tickets created and not solved, at the window's end",
        "Zendesk `Unsolved tickets`",
        count("open_tickets", "open_tickets"),
        attribution="a snapshot at the window's end",
    ),
    Kpi(
        "backlog_tickets",
        "support",
        "tickets",
        "open tickets older than 24 h (configurable), at the window's end",
        "Zendesk backlog age",
        count("backlog_tickets", "backlog_tickets"),
        attribution="a snapshot at the window's end",
    ),
    Kpi(
        "oldest_unanswered_ticket_age_seconds",
        "support",
        "seconds",
        "window end - creation time of the oldest open ticket without a public agent reply (0 when none)",
        "Zendesk `Requester wait time` (oldest)",
        _oldest_unanswered,
        attribution="a snapshot at the window's end",
        goal=("<=", 4 * 3600.0),
    ),
    Kpi(
        "escalation_rate",
        "support",
        "ratio",
        "escalations / tickets created",
        "Zendesk escalations",
        ratio("escalation_rate", "escalations", "tickets_created"),
        counters=("escalations",),
    ),
    Kpi(
        "reopen_rate",
        "support",
        "ratio",
        "reopens / solves",
        "Zendesk `Reopens`",
        ratio("reopen_rate", "reopens", "solves"),
        counters=("reopens",),
    ),
    Kpi(
        "one_touch_rate",
        "support",
        "ratio",
        "tickets solved with at most one public agent reply / tickets solved",
        "Zendesk `One-touch tickets`",
        ratio("one_touch_rate", "one_touch_solves", "solves"),
        counters=("one_touch_solves",),
    ),
    Kpi(
        "sla_breach_rate",
        "support",
        "ratio",
        "first replies later than the priority's target (urgent 1 h, high 4 h, normal 24 h, low 48 h) / first replies",
        "Zendesk SLA `First reply time` breaches",
        ratio("sla_breach_rate", "sla_breaches", "first_replies"),
        attribution=DURATION_END,
        counters=("sla_breaches",),
        goal=("<=", 0.1),
    ),
    Kpi(
        "csat",
        "support",
        "ratio",
        "good / (good + bad); good = score 4-5 of 5",
        "Zendesk CSAT",
        lambda m, ctx: [_ratio("csat", m.get("csat_good", 0), m.get("csat_good", 0) + m.get("csat_bad", 0))],
        counters=("csat_good", "csat_bad"),
        goal=(">=", 0.8),
    ),
    Kpi(
        "nps",
        "support",
        "score",
        "% promoters (9-10) - % detractors (0-6)",
        "Bain NPS",
        _nps,
        counters=("nps_promoters", "nps_detractors", "nps_responses"),
    ),
    # ------------------------------------------------------------------ cross
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

BY_KEY = {kpi.key: kpi for kpi in CATALOGUE}


def counters() -> list[Counted]:
    """Every counter of the catalogue, once, by name."""
    specs = {}
    for kpi in CATALOGUE:
        for spec in kpi.counters:
            spec = Counted(spec, spec) if isinstance(spec, str) else spec
            specs[spec.name] = spec
    return sorted(specs.values(), key=lambda c: c.name)


# Which families a cross KPI needs, besides `sales`.
CROSS_NEEDS = {"revenue_per_visitor": "traffic", "hit_rate": "support"}


def compute_family(family: str, measures: Measures, ctx: Context, *, insights: bool) -> list[Value]:
    values: list[Value] = []
    for kpi in CATALOGUE:
        if kpi.family == family and (insights or not kpi.insight):
            values.extend(kpi.compute(measures, ctx))
    return values
