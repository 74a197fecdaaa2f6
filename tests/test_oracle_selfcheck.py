"""The oracle against numbers worked out by hand: if these fail, the oracle is wrong, not the worker."""

from __future__ import annotations

import pytest
from oracle import compare, compute, drop_late, iso, lookup, summarize, ts_ms

T0 = 1_569_888_000_000  # 2019-10-01T00:00:00.000Z
S = 1000
MIN = 60 * S


def at(seconds: float) -> int:
    return T0 + int(seconds * S)


_ids = iter(range(1_000_000))


def click(etype, t, sid, visitor, **extra):
    return (
        "clickstream",
        {"event_id": f"c{next(_ids)}", "event_type": etype, "ts": t, "session_id": sid, "visitor_id": visitor, **extra},
    )


def order(etype, t, order_id, customer, **extra):
    return (
        "orders",
        {
            "event_id": f"o{next(_ids)}",
            "event_type": etype,
            "ts": t,
            "order_id": order_id,
            "customer_id": customer,
            **extra,
        },
    )


def ticket(etype, t, ticket_id, **extra):
    return ("tickets", {"event_id": f"t{next(_ids)}", "event_type": etype, "ts": t, "ticket_id": ticket_id, **extra})


def w(seconds: float, size: int = 60) -> str:
    """Start of the window of `size` seconds that contains T0 + seconds."""
    t = at(seconds)
    return iso(t - t % (size * S))


def test_time_helpers():
    assert iso(T0) == "2019-10-01T00:00:00.000Z"
    assert iso(T0 + 5 * MIN + 7) == "2019-10-01T00:05:00.007Z"
    assert ts_ms("2019-10-01T00:05:00.007Z") == T0 + 5 * MIN + 7
    assert ts_ms("2019-10-01T02:05:00.123+02:00") == T0 + 5 * MIN + 123
    assert ts_ms(T0) == T0


# ---------------------------------------------------------------- clickstream


@pytest.fixture(scope="module")
def clicks():
    a_first = click("page_view", at(10), "sA", "v1", device="desktop", source="google", is_new_visitor=True)
    events = [
        # session A: 60 s, 3 views, cart + purchase -> engaged, converted
        a_first,
        click("product_view", at(20), "sA", "v1", product_id="p1"),
        # session B (v2, never seen, no device/source): 3 s, 1 view -> bounce; 2 promo views, 1 click
        click("page_view", at(30), "sB", "v2"),
        click("promo_view", at(31), "sB", "v2"),
        click("promo_click", at(32), "sB", "v2"),
        click("promo_view", at(33), "sB", "v2"),
        click("product_view", at(40), "sA", "v1", product_id="p2"),
        click("add_to_cart", at(45), "sA", "v1", product_id="p2"),
        a_first,  # a duplicate: ignored
        click("purchase", at(70), "sA", "v1"),
        # session C (v1 again, is_new_visitor unset -> returning): 5 s, 1 view, cart, no purchase -> bounce
        click("page_view", at(120), "sC", "v1", device="mobile"),
        click("add_to_cart", at(125), "sC", "v1"),
        # sA again after 31 min of silence: a new session (A2), one event -> bounce
        click("page_view", at(70 + 31 * 60), "sA", "v1", device="desktop", is_new_visitor=False),
    ]
    return compute(events)


def test_traffic_first_minute(clicks):
    start = w(0)
    assert lookup(clicks, "sessions", "1m", start) == 2
    assert lookup(clicks, "unique_visitors", "1m", start) == 2
    assert lookup(clicks, "page_views", "1m", start) == 4
    assert lookup(clicks, "new_visitor_share", "1m", start) == 1.0
    assert lookup(clicks, "promo_ctr", "1m", start) == 0.5
    assert lookup(clicks, "email_ctr", "1m", start) is None
    assert lookup(clicks, "sessions_by_device", "1m", start, device="desktop") == 1
    assert lookup(clicks, "sessions_by_device", "1m", start, device="unknown") == 1
    assert lookup(clicks, "sessions_by_source", "1m", start, source="google") == 1
    assert lookup(clicks, "sessions_by_source", "1m", start, source="(direct)") == 1
    assert lookup(clicks, "searches", "1m", start) == 0


def test_traffic_windows_without_session_starts(clicks):
    start = w(70)  # only the purchase of session A
    assert lookup(clicks, "sessions", "1m", start) == 0
    assert lookup(clicks, "unique_visitors", "1m", start) == 1
    assert lookup(clicks, "new_visitor_share", "1m", start) is None
    assert ("pages_per_session", "1m", start, frozenset()) not in clicks  # no session started there
    assert lookup(clicks, "new_visitor_share", "1m", w(120)) == 0.0
    # no events at all in 00:03 -> no key
    assert ("sessions", "1m", w(180), frozenset()) not in clicks


def test_session_split_after_timeout(clicks):
    start = w(70 + 31 * 60)
    assert lookup(clicks, "sessions", "1m", start) == 1
    assert lookup(clicks, "new_visitor_share", "1m", start) == 0.0
    assert lookup(clicks, "bounce_rate", "1m", start) == 1.0
    assert lookup(clicks, "avg_session_duration_seconds", "1m", start) == 0.0
    assert lookup(clicks, "sessions", "1h", w(0, 3600)) == 4


def test_session_outcomes_by_start_window(clicks):
    # 1m window 00:00: sessions A (60 s, 3 views, cart, purchase) and B (3 s, 1 view)
    start = w(0)
    assert lookup(clicks, "pages_per_session", "1m", start) == 2.0
    assert lookup(clicks, "avg_session_duration_seconds", "1m", start) == 31.5
    assert lookup(clicks, "bounce_rate", "1m", start) == 0.5
    assert lookup(clicks, "add_to_cart_rate", "1m", start) == 0.5
    assert lookup(clicks, "conversion_rate", "1m", start) == 0.5
    assert lookup(clicks, "cart_abandonment_rate", "1m", start) == 0.0
    assert lookup(clicks, "checkout_abandonment_rate", "1m", start) is None
    # 1m window 00:02: session C
    assert lookup(clicks, "cart_abandonment_rate", "1m", w(120)) == 1.0
    assert lookup(clicks, "bounce_rate", "1m", w(120)) == 1.0
    # 5m window 00:00: A, B, C
    five = w(0, 300)
    assert lookup(clicks, "pages_per_session", "5m", five) == pytest.approx(5 / 3, rel=1e-15)
    assert lookup(clicks, "avg_session_duration_seconds", "5m", five) == pytest.approx(68 / 3, rel=1e-15)
    # 1h window: A, B, C, A2 -> views 6, durations 60+3+5+0, bounces B C A2
    hour = w(0, 3600)
    assert lookup(clicks, "pages_per_session", "1h", hour) == 1.5
    assert lookup(clicks, "avg_session_duration_seconds", "1h", hour) == 17.0
    assert lookup(clicks, "bounce_rate", "1h", hour) == 0.75
    assert lookup(clicks, "add_to_cart_rate", "1h", hour) == 0.5
    assert lookup(clicks, "conversion_rate", "1h", hour) == 0.25
    assert lookup(clicks, "cart_abandonment_rate", "1h", hour) == 0.5
    assert lookup(clicks, "new_visitor_share", "1h", hour) == 0.5
    assert lookup(clicks, "page_views", "1h", hour) == 6


def test_product_view_pairs_hourly_only(clicks):
    hour = w(0, 3600)
    assert lookup(clicks, "product_view_pairs", "1h", hour, item="p1>p2", rank="1") == 1
    assert not [k for k in clicks if k[0] == "product_view_pairs" and k[1] != "1h"]
    assert len([k for k in clicks if k[0] == "product_view_pairs"]) == 1


def test_exactly_timeout_is_same_session_and_label_cap():
    events = [click("page_view", at(0), "s1", "v1", device="desktop"), click("page_view", at(1800), "s1", "v1")]
    events += [
        click("page_view", at(5 + i), f"x{i}", f"u{i}", device=d)
        for i, d in enumerate(["mobile", "mobile", "tablet", "other", "tablet", "mobile"])
    ]
    out = compute(events, label_cap=2)
    hour = w(0, 3600)
    assert lookup(out, "sessions", "1h", hour) == 7
    assert lookup(out, "avg_session_duration_seconds", "1m", w(0)) == pytest.approx(1800 / 7, rel=1e-15)
    # mobile 3, tablet 2 kept; desktop 1 + other 1 folded into "other"
    devices = {dict(k[3])["device"]: v for k, v in out.items() if k[:3] == ("sessions_by_device", "1m", w(0))}
    assert devices == {"mobile": 3, "tablet": 2, "other": 2}


# ---------------------------------------------------------------- orders


@pytest.fixture(scope="module")
def orders():
    events = [
        # revenue 2*10 + 5.5 - 1.5 = 24.00; cost 12 + 2.25 = 14.25; new customer (first sight)
        order(
            "order_placed",
            at(10),
            "o1",
            "c1",
            currency="USD",
            discount=1.5,
            items=[
                {"product_id": "p1", "quantity": 2, "unit_price": 10.0, "unit_cost": 6.0},
                {"product_id": "p2", "quantity": 1, "unit_price": 5.5, "unit_cost": 2.25},
            ],
        ),
        # revenue 10.00, not costed; c1 returning
        order(
            "order_placed",
            at(20),
            "o2",
            "c1",
            currency="USD",
            items=[{"product_id": "p1", "quantity": 1, "unit_price": 10.0}],
        ),
        # guest: neither new nor returning
        order(
            "order_placed",
            at(30),
            "o3",
            None,
            currency="EUR",
            items=[{"product_id": "p3", "quantity": 1, "unit_price": 7.25}],
        ),
        order(
            "order_refunded",
            at(40),
            "o2",
            "c1",
            currency="USD",
            items=[{"product_id": "p1", "quantity": 1, "unit_price": 10.0}],
        ),
        order("order_cancelled", at(50), "o3", None, currency="EUR"),
        # next minute: a refund with an explicit amount and no currency
        order("order_refunded", at(65), "o9", "c2", refund_amount=3.3),
    ]
    visits = [click("page_view", at(5), "s1", "v1"), click("page_view", at(6), "s2", "v2")]
    return compute(events + visits)


def test_sales_minute(orders):
    start = w(0)
    assert lookup(orders, "orders", "1m", start) == 3
    assert lookup(orders, "revenue", "1m", start, currency="USD") == 34.0
    assert lookup(orders, "revenue", "1m", start, currency="EUR") == 7.25
    assert lookup(orders, "average_order_value", "1m", start, currency="USD") == 17.0
    assert lookup(orders, "average_order_value", "1m", start, currency="EUR") == 7.25
    assert lookup(orders, "units_per_order", "1m", start) == 5 / 3
    assert lookup(orders, "gross_profit", "1m", start, currency="USD") == 9.75
    assert ("gross_profit", "1m", start, frozenset({("currency", "EUR")})) not in orders
    assert lookup(orders, "gross_margin", "1m", start, currency="USD") == 9.75 / 24
    assert lookup(orders, "gross_margin", "1m", start, currency="EUR") is None
    assert lookup(orders, "cancellations", "1m", start) == 1
    assert lookup(orders, "refunds", "1m", start) == 1
    assert lookup(orders, "refund_amount", "1m", start, currency="USD") == 10.0
    assert lookup(orders, "refund_rate", "1m", start) == 1 / 3
    assert lookup(orders, "new_customer_orders", "1m", start) == 1
    assert lookup(orders, "returning_customer_orders", "1m", start) == 1
    assert lookup(orders, "returning_customer_rate", "1m", start) == 0.5
    assert lookup(orders, "revenue_per_visitor", "1m", start, currency="USD") == 17.0
    assert lookup(orders, "revenue_per_visitor", "1m", start, currency="EUR") == 3.625


def test_sales_refund_only_window(orders):
    start = w(65)
    assert lookup(orders, "orders", "1m", start) == 0
    assert lookup(orders, "refund_amount", "1m", start, currency="unknown") == 3.3
    assert lookup(orders, "refund_rate", "1m", start) is None
    assert lookup(orders, "units_per_order", "1m", start) is None
    assert not [k for k in orders if k[0] == "revenue" and k[2] == start]
    assert not [k for k in orders if k[0] == "revenue_per_visitor" and k[2] == start]  # no visits there


def test_sales_insights(orders):
    hour = w(0, 3600)
    assert lookup(orders, "top_products", "1h", hour, item="p1", rank="1") == 30.0
    assert lookup(orders, "top_products", "1h", hour, item="p3", rank="2") == 7.25
    assert lookup(orders, "top_products", "1h", hour, item="p2", rank="3") == 5.5
    assert lookup(orders, "product_affinity", "1h", hour, item="p1+p2", rank="1") == 1
    assert len([k for k in orders if k[0] == "product_affinity"]) == 1
    assert not [k for k in orders if k[0] == "top_products" and k[1] != "1h"]
    assert lookup(orders, "revenue", "1h", hour, currency="USD") == 34.0


def test_is_first_order_wins():
    events = [
        order("order_placed", at(1), "o1", "c1", currency="USD", is_first_order=False, items=[]),
        order("order_placed", at(2), "o2", "c1", currency="USD", is_first_order=True, items=[]),
    ]
    out = compute(events)
    assert lookup(out, "new_customer_orders", "1m", w(0)) == 1
    assert lookup(out, "returning_customer_orders", "1m", w(0)) == 1
    assert lookup(out, "revenue", "1m", w(0), currency="USD") == 0.0
    assert lookup(out, "gross_margin", "1m", w(0), currency="USD") is None  # no items: not costed


def test_money_is_exact():
    items = [{"product_id": "p", "quantity": 3, "unit_price": 0.1}]
    events = [order("order_placed", at(i), f"o{i}", None, currency="USD", items=items) for i in range(10)]
    out = compute(events)
    assert lookup(out, "revenue", "1m", w(0), currency="USD") == 3.0  # floats would give 3.0000000000000004


# ---------------------------------------------------------------- tickets


@pytest.fixture(scope="module")
def tickets():
    events = [
        ticket("ticket_created", at(0), "t1", channel="email", priority="high", category="billing"),
        ticket("ticket_created", at(10), "t2", channel="chat"),  # priority normal, category unknown
        ticket("agent_replied", at(20), "t3", public=True),  # unknown ticket: ignored
        ticket("ticket_escalated", at(50), "t2"),
        ticket("agent_replied", at(120), "t1", public=True),  # first reply: 120 s
        ticket("agent_replied", at(130), "t1", public=False),  # internal note: not a reply
        ticket("ticket_solved", at(300), "t1"),  # resolution 300 s, one touch
        ticket("ticket_solved", at(310), "t9"),  # unknown ticket: a solve, not one-touch
        ticket("csat_rated", at(320), "t1", score=5),
        ticket("csat_rated", at(330), "t1", score=2),
        ticket("nps_rated", at(340), "t1", score=10),
        ticket("nps_rated", at(345), "t1", score=8),
        ticket("nps_rated", at(350), "t1", score=3),
    ]
    return compute(events)


def test_tickets_created(tickets):
    start = w(0)
    assert lookup(tickets, "tickets_created", "1m", start) == 2
    assert lookup(tickets, "tickets_created_by_channel", "1m", start, channel="email") == 1
    assert lookup(tickets, "tickets_created_by_channel", "1m", start, channel="chat") == 1
    assert lookup(tickets, "tickets_created_by_category", "1m", start, category="billing") == 1
    assert lookup(tickets, "tickets_created_by_category", "1m", start, category="unknown") == 1
    assert lookup(tickets, "escalation_rate", "1m", start) == 0.5
    # end 00:01: t1 and t2 open, neither answered; the oldest is t1 (60 s)
    assert lookup(tickets, "open_tickets", "1m", start) == 2
    assert lookup(tickets, "backlog_tickets", "1m", start) == 0
    assert lookup(tickets, "oldest_unanswered_ticket_age_seconds", "1m", start) == 60.0
    assert lookup(tickets, "first_response_seconds", "1m", start, quantile="0.5") is None


def test_first_response(tickets):
    start = w(120)
    for dims in ({}, {"channel": "email"}, {"priority": "high"}):
        for q in ("0.5", "0.9"):
            assert lookup(tickets, "first_response_seconds", "1m", start, quantile=q, **dims) == 120.0
        assert lookup(tickets, "first_response_mean_seconds", "1m", start, **dims) == 120.0
    assert not [k for k in tickets if k[0] == "first_response_seconds" and ("channel", "chat") in k[3]]
    assert lookup(tickets, "sla_breach_rate", "1m", start) == 0.0
    assert lookup(tickets, "tickets_created", "1m", start) == 0
    assert lookup(tickets, "escalation_rate", "1m", start) is None
    # end 00:03: t1 answered at 00:02; t2 (created 00:00:10) is the oldest unanswered
    assert lookup(tickets, "open_tickets", "1m", start) == 2
    assert lookup(tickets, "oldest_unanswered_ticket_age_seconds", "1m", start) == 170.0


def test_solves_and_surveys(tickets):
    start = w(300)
    assert lookup(tickets, "resolution_seconds", "1m", start, quantile="0.5") == 300.0
    assert lookup(tickets, "resolution_mean_seconds", "1m", start) == 300.0
    assert lookup(tickets, "reopen_rate", "1m", start) == 0.0
    assert lookup(tickets, "one_touch_rate", "1m", start) == 0.5
    assert lookup(tickets, "csat", "1m", start) == 0.5
    assert lookup(tickets, "nps", "1m", start) == 0.0
    assert lookup(tickets, "open_tickets", "1m", start) == 1  # t1 solved at 00:05:00 < 00:06:00
    assert lookup(tickets, "oldest_unanswered_ticket_age_seconds", "1m", start) == 350.0
    assert lookup(tickets, "sla_breach_rate", "1m", start) is None
    # no support events in 00:03 -> no key, even though tickets are open
    assert ("open_tickets", "1m", w(180), frozenset()) not in tickets


def test_tickets_hour(tickets):
    hour = w(0, 3600)
    assert lookup(tickets, "tickets_created", "1h", hour) == 2
    assert lookup(tickets, "open_tickets", "1h", hour) == 1
    assert lookup(tickets, "oldest_unanswered_ticket_age_seconds", "1h", hour) == 3590.0
    assert lookup(tickets, "one_touch_rate", "1h", hour) == 0.5
    assert lookup(tickets, "first_response_mean_seconds", "1h", hour) == 120.0
    assert lookup(tickets, "nps", "1h", hour) == 0.0


def test_quantiles_sla_backlog_reopen():
    events = [ticket("ticket_created", at(0), f"t{i}", priority="urgent") for i in range(10)]
    # replies after 3591..3600 s + i*100 s; urgent SLA 3600 s -> breaches for i >= 1 (3700 s...)
    events += [ticket("agent_replied", at(3600 + 60 + i * 100), f"t{i}") for i in range(10)]
    events += [
        ticket("ticket_solved", at(3700), "t0"),
        ticket("ticket_reopened", at(3710), "t0"),
        ticket("ticket_solved", at(3720), "t1"),
    ]
    out = compute(events, backlog_s=3600)
    hour = w(3600, 3600)
    frts = sorted(3660 + i * 100 for i in range(10))
    assert lookup(out, "first_response_seconds", "1h", hour, quantile="0.5") == frts[4]  # floor(0.5 * 9)
    assert lookup(out, "first_response_seconds", "1h", hour, quantile="0.9") == frts[8]  # floor(0.9 * 9)
    assert lookup(out, "first_response_mean_seconds", "1h", hour) == sum(frts) / 10
    assert lookup(out, "sla_breach_rate", "1h", hour) == 1.0  # 3660 > 3600 too
    assert lookup(out, "reopen_rate", "1h", hour) == 0.5
    # end 02:00: t0 reopened (open), t1 solved -> 9 open, all older than 3600 s, all answered
    assert lookup(out, "open_tickets", "1h", hour) == 9
    assert lookup(out, "backlog_tickets", "1h", hour) == 9
    assert lookup(out, "oldest_unanswered_ticket_age_seconds", "1h", hour) == 0.0
    # 1h window 00:00: ends at 01:00, 10 open, none older than 3600 s, oldest unanswered 3600 s
    assert lookup(out, "open_tickets", "1h", w(0, 3600)) == 10
    assert lookup(out, "backlog_tickets", "1h", w(0, 3600)) == 0
    assert lookup(out, "oldest_unanswered_ticket_age_seconds", "1h", w(0, 3600)) == 3600.0


# ---------------------------------------------------------------- late, compare, summarize


def test_drop_late():
    events = [
        click("page_view", at(0), "s", "v"),
        click("page_view", at(200), "s", "v"),
        click("page_view", at(150), "s", "v"),  # window end 00:03:00 + 30 s > 00:03:20: kept
        click("page_view", at(100), "s", "v"),  # window end 00:02:00 + 30 s <= 00:03:20: late
        order("order_placed", at(30), "o", None, items=[]),
    ]  # another stream: kept
    kept, dropped = drop_late(events, grace_s=30, smallest_window_s=60)
    assert dropped == [events[3]]
    assert kept == [events[0], events[1], events[2], events[4]]


def _records(expected):
    return [
        {"kpi": k[0], "window": k[1], "window_start": k[2], "dimensions": dict(k[3]), "value": v, "final": True}
        for k, v in expected.items()
    ]


def test_compare(orders, tickets):
    expected = {**orders, **tickets}
    finals = _records(expected)
    assert compare(expected, finals) == []
    assert summarize(expected)["orders"] == 4  # 1m x 2, 5m, 1h

    start = w(0)
    changed = []
    for r in finals:
        r = dict(r)
        if (r["kpi"], r["window"], r["window_start"]) == ("orders", "1m", start):
            r["value"] = 4
        elif r["kpi"] == "revenue" and r["window"] == "1m" and r["window_start"] == start:
            r["value"] += 1e-8 if r["dimensions"]["currency"] == "USD" else 1e-3
        elif r["kpi"] == "first_response_seconds" and r["dimensions"] == {"quantile": "0.9"} and r["value"]:
            r["value"] *= 1.005  # within 1 %
        elif r["kpi"] == "first_response_mean_seconds" and r["dimensions"] == {} and r["window"] == "1m" and r["value"]:
            r["value"] *= 1.005  # the mean is exact
        elif r["kpi"] == "refund_rate" and r["value"] is None:
            r["value"] = 0.0
        elif r["kpi"] == "units_per_order" and r["window"] == "5m":
            continue  # missing
        changed.append(r)
    changed.append(dict(changed[-1]))  # a duplicate
    changed.append(
        {"kpi": "searches", "window": "1m", "window_start": w(600), "dimensions": {}, "value": 3, "final": True}
    )
    changed.append(
        {"kpi": "open_tickets", "window": "1m", "window_start": w(600), "dimensions": {}, "value": 1, "final": True}
    )  # a snapshot of a quiet window: fine
    changed.append(
        {"kpi": "searches", "window": "1m", "window_start": w(660), "dimensions": {}, "value": 0, "final": True}
    )  # zero: fine
    problems = compare(expected, changed)
    text = "\n".join(problems)
    assert "mismatch orders 1m 2019-10-01T00:00:00.000Z: expected 3, got 4" in text
    assert "revenue 1m 2019-10-01T00:00:00.000Z {currency=EUR}" in text
    assert "{currency=USD}" not in text
    assert "quantile=0.9" not in text
    assert "mismatch first_response_mean_seconds 1m 2019-10-01T00:02:00.000Z:" in text
    assert "mismatch refund_rate 1m 2019-10-01T00:01:00.000Z: expected None, got 0.0" in text
    assert "missing units_per_order 5m 2019-10-01T00:00:00.000Z" in text
    assert f"duplicate finals for {changed[-5]['kpi']}" in text
    assert "unexpected searches 1m 2019-10-01T00:10:00.000Z = 3" in text
    assert "open_tickets 1m 2019-10-01T00:10:00.000Z" not in text
    assert "00:11:00" not in text
    assert len(problems) == 7, text
    # non-final records are ignored
    assert compare(expected, finals + [{**finals[0], "value": -1, "final": False}]) == []
