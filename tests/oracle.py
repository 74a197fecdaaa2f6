"""An independent batch recomputation of the KPIs (the "oracle").

Tests replay events through the streaming worker and compare its `final` records on the
`kpi-results` topic with what this module computes from the same events in one pass of
plain Python: exact sets, sorted lists and exact quantiles, Decimal money, no sketches.

Independence is the point: nothing here is imported from `shoppulse.streams.engine`,
`merge`, `kpis` or `measures`. Events are plain dicts (as produced, canonical JSON
objects); a msgspec struct is converted to a dict first.

    kept, dropped = drop_late(events, grace_s=30, smallest_window_s=60)
    expected = compute(kept)
    problems = compare(expected, finals)      # [] when the worker agrees
    summarize(expected)                        # {kpi: number of keys}, for messages

Keys of `expected`: (kpi, window_label, window_start_iso, frozenset(dimensions.items())).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

Key = tuple[str, str, str, frozenset]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLI = timedelta(milliseconds=1)
MICRO = Decimal("0.000001")
DEFAULT_SLA = {"urgent": 3600, "high": 14400, "normal": 86400, "low": 172800}

VIEW_TYPES = ("page_view", "product_view")
TRAFFIC_COUNTS = {
    "newsletter_signup": "newsletter_signups",
    "sms_signup": "sms_signups",
    "unsubscribe": "unsubscribes",
    "chat_start": "chats_started",
    "search": "searches",
    "review_submitted": "reviews_submitted",
}
ENGAGED_MS = 10_000

# How values compare (see `compare`).
COUNT_KPIS = frozenset(
    {
        "sessions",
        "sessions_by_device",
        "sessions_by_source",
        "unique_visitors",
        "page_views",
        *TRAFFIC_COUNTS.values(),
        "product_view_pairs",
        "orders",
        "cancellations",
        "refunds",
        "new_customer_orders",
        "returning_customer_orders",
        "product_affinity",
        "tickets_created",
        "tickets_created_by_channel",
        "tickets_created_by_category",
        "open_tickets",
        "backlog_tickets",
    }
)
MONEY_KPIS = frozenset(
    {"revenue", "average_order_value", "gross_profit", "refund_amount", "top_products", "revenue_per_visitor"}
)
QUANTILE_KPIS = frozenset({"first_response_seconds", "resolution_seconds"})
# Snapshots: the worker also emits them for windows without activity while tickets are open.
SNAPSHOT_KPIS = frozenset({"open_tickets", "backlog_tickets", "oldest_unanswered_ticket_age_seconds"})


# ------------------------------------------------------------------ small helpers


def ts_ms(value: Any) -> int:
    """Epoch milliseconds from an int or an RFC 3339 string with a zone (exact, no floats)."""
    if isinstance(value, bool):
        raise ValueError(f"bad ts {value!r}")
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"ts {value!r} has no zone")
    return (parsed - EPOCH) // MILLI


def iso(ms: int) -> str:
    """RFC 3339 UTC with milliseconds and Z."""
    moment = EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def window_label(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def money(x: Any) -> Decimal:
    return Decimal(str(x)) if x is not None else Decimal(0)


def money_out(d: Decimal | Fraction) -> float:
    """A money total, rounded to micro-units."""
    if isinstance(d, Fraction):
        d = Decimal(d.numerator) / Decimal(d.denominator)
    return float(d.quantize(MICRO))


def ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def capped(counts: dict[str, int], cap: int) -> dict[str, int]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[:cap])
    rest = sum(c for _, c in ranked[cap:])
    if rest:
        kept["other"] = kept.get("other", 0) + rest
    return kept


# The insight lists are heavy-hitter sketches (docs/kpis.md): exact while a window has at
# most 3,072 distinct items; beyond that each reported weight may be off by up to
# 3.5 / 4,096 of the window's total weight (Apache DataSketches frequent items, lg_max_k 12).
TOP_EXACT_ITEMS = 6144  # measures.TopItems: 3/4 of 2**13, the sketch's documented exact range
TOP_EPSILON = 3.5 / 8192


@dataclass
class ApproximateTop:
    """Expectation for a top list whose item space is beyond the sketch's exact range: the
    true value of every item, and the tolerance of a reported value."""

    truth: dict[str, Any]
    n: int
    tolerance: float


def ranked(counts: dict[str, Any], n: int) -> list[tuple[int, str, Any]]:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [(rank, item, value) for rank, (item, value) in enumerate(items, 1)]


def quantile_ms(sorted_values: list[int], q: Fraction) -> int:
    """sorted_values[floor(q * (n - 1))], in integer arithmetic."""
    return sorted_values[math.floor(q * (len(sorted_values) - 1))]


def stats(values_ms: list[int]) -> dict[str, float | None]:
    if not values_ms:
        return {"p50": None, "p90": None, "mean": None}
    s = sorted(values_ms)
    return {
        "p50": quantile_ms(s, Fraction(1, 2)) / 1000,
        "p90": quantile_ms(s, Fraction(9, 10)) / 1000,
        "mean": float(Fraction(sum(s), 1000 * len(s))),
    }


def as_dict(event: Any) -> dict:
    if isinstance(event, dict):
        return event
    import msgspec  # a struct from shoppulse.streams.events

    return msgspec.to_builtins(event)


# ------------------------------------------------------------------ late events


def drop_late(events: list, grace_s: float = 30, smallest_window_s: int = 60) -> tuple[list, list]:
    """Per stream, in order: drop an event when the end of its smallest window + grace is at
    or before the largest ts seen so far on that stream. Returns (kept, dropped)."""
    size, grace = int(smallest_window_s * 1000), int(grace_s * 1000)
    high: dict[str, int] = {}
    kept, dropped = [], []
    for stream, event in events:
        t = ts_ms(as_dict(event)["ts"])
        top = high.get(stream)
        if top is not None and t - t % size + size + grace <= top:
            dropped.append((stream, event))
            continue
        high[stream] = t if top is None else max(top, t)
        kept.append((stream, event))
    return kept, dropped


# ------------------------------------------------------------------ per-window accumulators


@dataclass
class Traffic:
    sessions: int = 0
    new_sessions: int = 0
    devices: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)
    visitors: set = field(default_factory=set)
    page_views: int = 0
    counts: Counter = field(default_factory=Counter)  # event type -> n
    pairs: Counter = field(default_factory=Counter)


@dataclass
class Session:
    start: int
    last: int
    views: int = 0
    cart: bool = False
    checkout: bool = False
    purchase: bool = False
    product: str | None = None  # last viewed product


@dataclass
class Sales:
    orders: int = 0
    units: int = 0
    orders_by_currency: Counter = field(default_factory=Counter)
    revenue: dict = field(default_factory=lambda: defaultdict(Decimal))
    costed_revenue: dict = field(default_factory=lambda: defaultdict(Decimal))
    profit: dict = field(default_factory=lambda: defaultdict(Decimal))
    costed: set = field(default_factory=set)  # currencies with at least one costed order
    cancellations: int = 0
    refunds: int = 0
    refund_amount: dict = field(default_factory=lambda: defaultdict(Decimal))
    new: int = 0
    returning: int = 0
    product_revenue: dict = field(default_factory=lambda: defaultdict(Decimal))
    product_units: Counter = field(default_factory=Counter)
    pairs: Counter = field(default_factory=Counter)


@dataclass
class Support:
    created: int = 0
    channels: Counter = field(default_factory=Counter)
    categories: Counter = field(default_factory=Counter)
    frt: list = field(default_factory=list)  # (ms, channel, priority)
    breaches: int = 0
    resolution: list = field(default_factory=list)
    escalations: int = 0
    solves: int = 0
    one_touch: int = 0
    reopens: int = 0
    csat_good: int = 0
    csat_bad: int = 0
    nps_n: int = 0
    nps_promoters: int = 0
    nps_detractors: int = 0
    product_tickets: Counter = field(default_factory=Counter)


@dataclass
class Tallies:
    """Observations over a whole run, for histograms: first replies by (channel, priority), and
    solves of tickets whose creation was seen."""

    first_replies: Counter = field(default_factory=Counter)
    resolutions: int = 0


@dataclass
class Ticket:
    created: int
    channel: str
    priority: str
    replies: int = 0
    first_reply: int | None = None
    changes: list = field(default_factory=list)  # (ts, arrival index, "solved" | "reopened")


# ------------------------------------------------------------------ compute


def compute(
    events: Iterable,
    *,
    windows_s: Iterable[int] = (60, 300, 3600),
    grace_s: float = 30,
    session_timeout_s: float = 1800,
    label_cap: int = 8,
    top_n: int = 20,
    sla: dict[str, float] | None = None,
    backlog_s: float = 86400,
    hit_rate: bool = True,
    tallies: Tallies | None = None,
) -> dict[Key, Any]:
    """Expected KPI values of every window that has events of the KPI's family.

    `events` are (stream, event dict) in production order, late events already removed
    (see `drop_late`; `grace_s` is accepted for symmetry and not used here). With `tallies`,
    also the observations behind the worker's histograms, over all events."""
    sizes = sorted(int(s) * 1000 for s in windows_s)
    largest = sizes[-1]
    timeout = int(session_timeout_s * 1000)
    sla_ms = {p: int(s * 1000) for p, s in (sla or DEFAULT_SLA).items()}
    backlog_ms = int(backlog_s * 1000)

    traffic: dict[tuple[int, int], Traffic] = defaultdict(Traffic)
    sales: dict[tuple[int, int], Sales] = defaultdict(Sales)
    support: dict[tuple[int, int], Support] = defaultdict(Support)
    seen_ids: dict[str, set] = defaultdict(set)

    open_sessions: dict[str, Session] = {}
    all_sessions: list[Session] = []
    seen_visitors: set[str] = set()
    seen_customers: set[str] = set()
    tickets: dict[str, Ticket] = {}

    def windows(t: int) -> list[tuple[int, int]]:
        return [(size, t - t % size) for size in sizes]

    for index, (stream, raw) in enumerate(events):
        e = as_dict(raw)
        if e["event_id"] in seen_ids[stream]:
            continue
        seen_ids[stream].add(e["event_id"])
        t, etype = ts_ms(e["ts"]), e["event_type"]
        keys = windows(t)
        top_key = (largest, t - t % largest)

        if stream == "clickstream":
            visitor = e["visitor_id"]
            sid = (visitor, e["session_id"])  # a session id reused by another visitor is another session
            session = open_sessions.get(sid)
            if session is not None and t - session.last > timeout:
                session = None
            if session is None:
                session = open_sessions[sid] = Session(start=t, last=t)
                all_sessions.append(session)
                flag = e.get("is_new_visitor")
                new = flag if flag is not None else visitor not in seen_visitors
                for k in keys:
                    w = traffic[k]
                    w.sessions += 1
                    w.new_sessions += bool(new)
                    w.devices[e.get("device") or "unknown"] += 1
                    w.sources[e.get("source") or "(direct)"] += 1
            seen_visitors.add(visitor)
            session.last = max(session.last, t)
            for k in keys:
                traffic[k].visitors.add(visitor)
                traffic[k].counts[etype] += 1
            if etype in VIEW_TYPES:
                session.views += 1
                for k in keys:
                    traffic[k].page_views += 1
                product = e.get("product_id")
                if etype == "product_view" and product:
                    if session.product and session.product != product:
                        traffic[top_key].pairs[f"{session.product}>{product}"] += 1
                    session.product = product
            elif etype == "add_to_cart":
                session.cart = True
            elif etype == "begin_checkout":
                session.checkout = True
            elif etype == "purchase":
                session.purchase = True

        elif stream == "orders":
            currency = e.get("currency") or "unknown"
            items = e.get("items") or []
            for k in keys:
                sales[k]  # the window exists, whatever the event
            if etype == "order_placed":
                gross = sum((money(i["quantity"]) * money(i["unit_price"]) for i in items), Decimal(0))
                revenue = gross - money(e.get("discount"))
                units = sum(int(i["quantity"]) for i in items)
                costed = bool(items) and all(i.get("unit_cost") is not None for i in items)
                cost = (
                    sum((money(i["quantity"]) * money(i["unit_cost"]) for i in items), Decimal(0)) if costed else None
                )
                customer = e.get("customer_id")
                first = e.get("is_first_order")
                if first is None:
                    first = customer is not None and customer not in seen_customers
                if customer is not None:
                    seen_customers.add(customer)
                for k in keys:
                    w = sales[k]
                    w.orders += 1
                    w.units += units
                    w.orders_by_currency[currency] += 1
                    w.revenue[currency] += revenue
                    if costed:
                        w.costed.add(currency)
                        w.costed_revenue[currency] += revenue
                        w.profit[currency] += revenue - cost
                    if customer is not None:
                        if first:
                            w.new += 1
                        else:
                            w.returning += 1
                top = sales[top_key]
                for i in items:
                    top.product_revenue[i["product_id"]] += money(i["quantity"]) * money(i["unit_price"])
                    top.product_units[i["product_id"]] += int(i["quantity"])
                products = sorted({i["product_id"] for i in items})
                for a_index, a in enumerate(products):
                    for b in products[a_index + 1 :]:
                        top.pairs[f"{a}+{b}"] += 1
            elif etype == "order_cancelled":
                for k in keys:
                    sales[k].cancellations += 1
            elif etype == "order_refunded":
                amount = e.get("refund_amount")
                amount = (
                    money(amount)
                    if amount is not None
                    else sum((money(i["quantity"]) * money(i["unit_price"]) for i in items), Decimal(0))
                )
                for k in keys:
                    sales[k].refunds += 1
                    sales[k].refund_amount[currency] += amount

        elif stream == "tickets":
            tid = e["ticket_id"]
            ticket = tickets.get(tid)
            for k in keys:
                support[k]  # the window exists, whatever the event
            if etype == "ticket_created":
                ticket = tickets[tid] = Ticket(
                    created=t, channel=e.get("channel") or "unknown", priority=e.get("priority") or "normal"
                )
                for k in keys:
                    w = support[k]
                    w.created += 1
                    w.channels[ticket.channel] += 1
                    w.categories[e.get("category") or "unknown"] += 1
                if e.get("product_id"):
                    support[top_key].product_tickets[e["product_id"]] += 1
            elif etype == "agent_replied":
                if ticket is not None and e.get("public") is not False:
                    ticket.replies += 1
                    if ticket.first_reply is None:
                        ticket.first_reply = t
                        frt = t - ticket.created
                        if tallies is not None:
                            tallies.first_replies[(ticket.channel, ticket.priority)] += 1
                        target = sla_ms.get(ticket.priority, sla_ms["normal"])
                        for k in keys:
                            support[k].frt.append((frt, ticket.channel, ticket.priority))
                            support[k].breaches += frt > target
            elif etype == "ticket_escalated":
                for k in keys:
                    support[k].escalations += 1
            elif etype == "ticket_solved":
                if tallies is not None and ticket is not None:
                    tallies.resolutions += 1
                for k in keys:
                    w = support[k]
                    w.solves += 1
                    if ticket is not None:
                        w.one_touch += ticket.replies <= 1
                        w.resolution.append(t - ticket.created)
                if ticket is not None:
                    ticket.changes.append((t, index, "solved"))
            elif etype == "ticket_reopened":
                for k in keys:
                    support[k].reopens += 1
                if ticket is not None:
                    ticket.changes.append((t, index, "reopened"))
            elif etype == "csat_rated":
                for k in keys:
                    if e["score"] >= 4:
                        support[k].csat_good += 1
                    else:
                        support[k].csat_bad += 1
            elif etype == "nps_rated":
                for k in keys:
                    w = support[k]
                    w.nps_n += 1
                    w.nps_promoters += e["score"] >= 9
                    w.nps_detractors += e["score"] <= 6
        else:
            raise ValueError(f"unknown stream {stream!r}")

    out: dict[Key, Any] = {}

    def put(kpi: str, size: int, start: int, value: Any, **dims: str) -> None:
        key = (kpi, window_label(size // 1000), iso(start), frozenset(dims.items()))
        assert key not in out, key
        out[key] = value

    def put_durations(kpi: str, size: int, start: int, values_ms: list[int], **dims: str) -> None:
        """p50 and p90 with a `quantile` label, the exact mean as `<kpi minus _seconds>_mean_seconds`."""
        s = stats(values_ms)
        put(kpi, size, start, s["p50"], quantile="0.5", **dims)
        put(kpi, size, start, s["p90"], quantile="0.9", **dims)
        put(kpi.removesuffix("_seconds") + "_mean_seconds", size, start, s["mean"], **dims)

    def put_top(kpi: str, size: int, start: int, values: dict[str, Any]) -> None:
        values = {item: value for item, value in values.items() if value > 0}  # ranked by a positive weight
        if len(values) <= TOP_EXACT_ITEMS:
            for rank, item, value in ranked(values, top_n):
                put(kpi, size, start, value, item=item, rank=str(rank))
        else:
            tolerance = TOP_EPSILON * sum(values.values())
            put(kpi, size, start, ApproximateTop(values, top_n, float(tolerance)), approximate="top")

    # ---- traffic
    for (size, start), w in traffic.items():
        put("sessions", size, start, w.sessions)
        for label, n in capped(w.devices, label_cap).items():
            put("sessions_by_device", size, start, n, device=label)
        for label, n in capped(w.sources, label_cap).items():
            put("sessions_by_source", size, start, n, source=label)
        put("unique_visitors", size, start, len(w.visitors))
        put("page_views", size, start, w.page_views)
        put("new_visitor_share", size, start, ratio(w.new_sessions, w.sessions))
        put("promo_ctr", size, start, ratio(w.counts["promo_click"], w.counts["promo_view"]))
        put("email_ctr", size, start, ratio(w.counts["email_click"], w.counts["email_open"]))
        for etype, kpi in TRAFFIC_COUNTS.items():
            put(kpi, size, start, w.counts[etype])
        if size == largest:
            put_top("product_view_pairs", size, start, w.pairs)

    # ---- sessions (attributed to the window of the session's first event)
    by_start: dict[tuple[int, int], list[Session]] = defaultdict(list)
    for s in all_sessions:
        for k in windows(s.start):
            by_start[k].append(s)
    for (size, start), group in by_start.items():
        n = len(group)
        engaged = sum(1 for s in group if s.last - s.start > ENGAGED_MS or s.views >= 2 or s.purchase)
        carts = [s for s in group if s.cart]
        checkouts = [s for s in group if s.checkout]
        put("pages_per_session", size, start, ratio(sum(s.views for s in group), n))
        put(
            "avg_session_duration_seconds", size, start, float(Fraction(sum(s.last - s.start for s in group), 1000 * n))
        )
        put("bounce_rate", size, start, ratio(n - engaged, n))
        put("add_to_cart_rate", size, start, ratio(len(carts), n))
        put("conversion_rate", size, start, ratio(sum(s.purchase for s in group), n))
        put("cart_abandonment_rate", size, start, ratio(sum(not s.purchase for s in carts), len(carts)))
        put("checkout_abandonment_rate", size, start, ratio(sum(not s.purchase for s in checkouts), len(checkouts)))

    # ---- sales and cross
    for (size, start), w in sales.items():
        put("orders", size, start, w.orders)
        for c in sorted(w.revenue):
            put("revenue", size, start, money_out(w.revenue[c]), currency=c)
            aov = w.revenue[c].quantize(MICRO) / w.orders_by_currency[c]
            put("average_order_value", size, start, float(aov), currency=c)
            if c in w.costed:
                put("gross_profit", size, start, money_out(w.profit[c]), currency=c)
            costed_revenue = w.costed_revenue[c].quantize(MICRO)
            margin = float(w.profit[c].quantize(MICRO) / costed_revenue) if c in w.costed and costed_revenue else None
            put("gross_margin", size, start, margin, currency=c)
        put("units_per_order", size, start, ratio(w.units, w.orders))
        put("cancellations", size, start, w.cancellations)
        put("refunds", size, start, w.refunds)
        for c in sorted(w.refund_amount):
            put("refund_amount", size, start, money_out(w.refund_amount[c]), currency=c)
        put("refund_rate", size, start, ratio(w.refunds, w.orders))
        put("new_customer_orders", size, start, w.new)
        put("returning_customer_orders", size, start, w.returning)
        put("returning_customer_rate", size, start, ratio(w.returning, w.returning + w.new))
        if size == largest:
            put_top("top_products", size, start, {k: money_out(v) for k, v in w.product_revenue.items()})
            put_top("product_affinity", size, start, w.pairs)
            tickets_here = support.get((size, start))
            if hit_rate and tickets_here is not None:
                rates = {
                    p: units / tickets_here.product_tickets[p]
                    for p, units in w.product_units.items()
                    if tickets_here.product_tickets.get(p)
                }
                for rank, item, rate in ranked(rates, top_n):
                    put("hit_rate", size, start, rate, item=item, rank=str(rank))
        visits = traffic.get((size, start))
        if visits is not None:  # revenue per visitor: only where both families have events
            for c in sorted(w.revenue):
                rpv = w.revenue[c].quantize(MICRO) / len(visits.visitors)
                put("revenue_per_visitor", size, start, float(rpv), currency=c)

    # ---- support
    snapshots = _snapshots(tickets, sorted(support), backlog_ms)
    for (size, start), w in support.items():
        put("tickets_created", size, start, w.created)
        for label, n in capped(w.channels, label_cap).items():
            put("tickets_created_by_channel", size, start, n, channel=label)
        for label, n in capped(w.categories, label_cap).items():
            put("tickets_created_by_category", size, start, n, category=label)
        put_durations("first_response_seconds", size, start, [f for f, _, _ in w.frt])
        for dim, pos in (("channel", 1), ("priority", 2)):
            groups: dict[str, list[int]] = defaultdict(list)
            for record in w.frt:
                groups[record[pos]].append(record[0])
            for label in sorted(groups):
                put_durations("first_response_seconds", size, start, groups[label], **{dim: label})
        put_durations("resolution_seconds", size, start, w.resolution)
        open_count, backlog, oldest_ms = snapshots[(size, start)]
        put("open_tickets", size, start, open_count)
        put("backlog_tickets", size, start, backlog)
        put("oldest_unanswered_ticket_age_seconds", size, start, oldest_ms / 1000 if oldest_ms is not None else 0.0)
        put("escalation_rate", size, start, ratio(w.escalations, w.created))
        put("reopen_rate", size, start, ratio(w.reopens, w.solves))
        put("one_touch_rate", size, start, ratio(w.one_touch, w.solves))
        put("sla_breach_rate", size, start, ratio(w.breaches, len(w.frt)))
        put("csat", size, start, ratio(w.csat_good, w.csat_good + w.csat_bad))
        put("nps", size, start, 100 * (w.nps_promoters - w.nps_detractors) / w.nps_n if w.nps_n else None)
    return out


def _snapshots(
    tickets: dict[str, Ticket], windows: list[tuple[int, int]], backlog_ms: int
) -> dict[tuple[int, int], tuple[int, int, int | None]]:
    """(open, backlog, oldest unanswered age in ms) at the end of each window.

    Open at e: created < e and the latest (by ts, then arrival) solved/reopened event with
    ts < e is not a solve. Unanswered at e: no first public reply, or it is at or after e."""
    result = {}
    ordered = sorted(tickets.values(), key=lambda tk: tk.created)
    changes = {id(tk): sorted(tk.changes) for tk in ordered}
    for size, start in windows:
        end = start + size
        open_count = backlog = 0
        oldest = None
        for tk in ordered:
            if tk.created >= end:
                break
            state = "open"
            for t, _, change in changes[id(tk)]:
                if t >= end:
                    break
                state = "open" if change == "reopened" else "solved"
            if state != "open":
                continue
            open_count += 1
            backlog += end - tk.created > backlog_ms
            if oldest is None and (tk.first_reply is None or tk.first_reply >= end):
                oldest = end - tk.created  # tickets are in creation order: the first is the oldest
        result[(size, start)] = (open_count, backlog, oldest)
    return result


# ------------------------------------------------------------------ comparison


def _fmt(key: Key) -> str:
    kpi, window, start, dims = key
    dims_text = ",".join(f"{k}={v}" for k, v in sorted(dims))
    return f"{kpi} {window} {start}" + (f" {{{dims_text}}}" if dims_text else "")


def key_of(record: dict) -> Key:
    dims = record.get("dimensions") or {}
    return (record["kpi"], record["window"], record["window_start"], frozenset(dims.items()))


def values_match(key: Key, expected: Any, actual: Any, *, quantile_rel: float = 0.01, money_rel: float = 1e-9) -> bool:
    kpi, dims = key[0], dict(key[3])
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        return False
    if kpi in COUNT_KPIS:
        return actual == expected
    if kpi in MONEY_KPIS:
        return math.isclose(actual, expected, rel_tol=money_rel, abs_tol=1e-6)
    if kpi in QUANTILE_KPIS and "quantile" in dims:
        return math.isclose(actual, expected, rel_tol=quantile_rel, abs_tol=1e-3)
    return math.isclose(actual, expected, rel_tol=1e-12, abs_tol=1e-12)


def compare(
    expected: dict[Key, Any],
    finals: list[dict],
    *,
    quantile_rel: float = 0.01,
    money_rel: float = 1e-9,
    check_extra: bool = True,
    limit: int | None = 200,
) -> list[str]:
    """Mismatch lines between the oracle and the worker's final kpi-results records.

    Reports: expected keys without a final record; values that differ; more than one final
    record for a key; and (with `check_extra`) final records the oracle has no key for whose
    value is neither 0 nor None — except window-end snapshots (open tickets...) of windows
    without support events, which the worker emits while tickets are open."""
    problems: list[str] = []
    got: dict[Key, list[Any]] = defaultdict(list)
    for record in finals:
        if record.get("final", True):
            got[key_of(record)].append(record.get("value"))
    for key, values in sorted(got.items(), key=lambda kv: _fmt(kv[0])):
        if len(values) > 1:
            problems.append(f"duplicate finals for {_fmt(key)}: {values}")
    approximate = {key[:3]: want for key, want in expected.items() if isinstance(want, ApproximateTop)}
    for (kpi, window, start), want in sorted(approximate.items()):
        problems.extend(_compare_top(kpi, window, start, want, got))
    for key in sorted(expected, key=_fmt):
        want = expected[key]
        if isinstance(want, ApproximateTop):
            continue
        if key not in got:
            problems.append(f"missing {_fmt(key)}: expected {want!r}")
            continue
        have = got[key][0]
        if not values_match(key, want, have, quantile_rel=quantile_rel, money_rel=money_rel):
            problems.append(f"mismatch {_fmt(key)}: expected {want!r}, got {have!r}")
    if check_extra:
        support_windows = {(k[1], k[2]) for k in expected if k[0] == "tickets_created"}
        for key, values in sorted(got.items(), key=lambda kv: _fmt(kv[0])):
            if key in expected or key[:3] in approximate or values[0] is None or values[0] == 0:
                continue
            if key[0] in SNAPSHOT_KPIS and (key[1], key[2]) not in support_windows:
                continue
            problems.append(f"unexpected {_fmt(key)} = {values[0]!r} (no such key in the oracle)")
    if limit is not None and len(problems) > limit:
        problems = problems[:limit] + [f"... and {len(problems) - limit} more"]
    return problems


def _compare_top(kpi: str, window: str, start: str, want: ApproximateTop, got: dict[Key, list[Any]]) -> list[str]:
    """A sketched top list: the right length, ranks 1..n by non-increasing value, and every
    item's value within the sketch's tolerance of its true value."""
    rows = sorted(
        (int(dict(k[3])["rank"]), dict(k[3])["item"], v[0]) for k, v in got.items() if k[:3] == (kpi, window, start)
    )
    where = f"{kpi} {window} {start}"
    problems = []
    if [r for r, _, _ in rows] != list(range(1, min(want.n, len(want.truth)) + 1)):
        problems.append(f"{where}: ranks {[r for r, _, _ in rows]}, expected 1..{min(want.n, len(want.truth))}")
    values = [v for _, _, v in rows]
    if values != sorted(values, reverse=True):
        problems.append(f"{where}: values not in rank order: {values}")
    for rank, item, value in rows:
        true = want.truth.get(item)
        if true is None or abs(value - float(true)) > want.tolerance + 1e-6:
            problems.append(
                f"{where}: rank {rank} {item} = {value}, true value {true} (tolerance {want.tolerance:.2f})"
            )
    return problems


def required_keys(expected: dict[Key, Any]) -> set[Key]:
    """Keys that must each have one final record (sketched top lists are checked as a whole)."""
    return {key for key, want in expected.items() if not isinstance(want, ApproximateTop)}


def summarize(expected: dict[Key, Any]) -> dict[str, int]:
    """Number of expected keys per KPI."""
    return dict(sorted(Counter(key[0] for key in expected).items()))


def lookup(expected: dict[Key, Any], kpi: str, window: str, start: str | int, **dims: str) -> Any:
    """One expected value (KeyError when the oracle has none); `start` may be epoch ms."""
    if isinstance(start, int):
        start = iso(start)
    return expected[(kpi, window, start, frozenset(dims.items()))]
