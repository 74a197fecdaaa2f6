"""The traffic generator: deterministic, valid, and shaped like the issue asks."""

from __future__ import annotations

import itertools
import statistics
import time
from collections import Counter, defaultdict

import pytest

from shoppulse.streams.events import EVENT_TYPES, Event, encode, parse
from shoppulse.tools.generate import (
    SCENARIOS,
    SOURCES,
    Funnel,
    GeneratorConfig,
    TrafficGenerator,
    generate_events,
    run,
)
from shoppulse.tools.sink import EventSink

# 2023-11-14 14:00 UTC: the daily rate curve crosses 1.0 here, so the rate is the configured one.
START = 1_699_970_400_000
MINUTE = 60_000


def events(duration_s: float, **config) -> list[tuple[str, Event]]:
    return list(generate_events(GeneratorConfig(**config), START, duration_s))


def count(evs: list[tuple[str, Event]], event_type: str) -> int:
    return sum(1 for _, e in evs if e.event_type == event_type)


@pytest.fixture(scope="module")
def normal_run() -> list[tuple[str, Event]]:
    return events(30 * 60, rate=50, seed=7)


def test_same_seed_same_output_and_other_seed_differs():
    options = dict(rate=50, late_fraction=0.02, duplicate_fraction=0.02)
    first = [(s, encode(e)) for s, e in events(120, seed=5, **options)]
    again = [(s, encode(e)) for s, e in events(120, seed=5, **options)]
    other = [(s, encode(e)) for s, e in events(120, seed=6, **options)]
    assert first == again
    assert first != other


def test_every_event_parses(normal_run):
    now = START + 30 * MINUTE
    for stream, event in normal_run:
        parsed = parse(stream, encode(event), now_ms=now)
        assert parsed.ts_ms == event.ts
    assert len({e.event_id for _, e in normal_run}) == len(normal_run)


def test_all_topics_and_types_appear(normal_run):
    seen = {(stream, e.event_type) for stream, e in normal_run}
    for stream, types in EVENT_TYPES.items():
        assert {(stream, t) for t in types} <= seen, stream


def test_funnel_is_monotone(normal_run):
    per_step = {step: count(normal_run, step) for step in ("product_view", "add_to_cart", "begin_checkout", "purchase")}
    assert per_step["product_view"] >= per_step["add_to_cart"] >= per_step["begin_checkout"] >= per_step["purchase"] > 0
    sessions = defaultdict(set)
    for stream, e in normal_run:
        if stream == "clickstream":
            sessions[e.event_type].add(e.session_id)
    reached = [len(sessions[step]) for step in per_step]
    assert reached == sorted(reached, reverse=True)


def test_every_purchase_has_its_order_right_after(normal_run):
    purchases = 0
    for (_stream, e), (next_stream, order) in itertools.pairwise(normal_run):
        if e.event_type == "purchase":
            purchases += 1
            assert next_stream == "orders" and order.event_type == "order_placed"
            assert (order.session_id, order.visitor_id, order.ts) == (e.session_id, e.visitor_id, e.ts)
            assert order.customer_id in (None, f"c-{e.visitor_id}")
    assert purchases == count(normal_run, "order_placed")


def test_traffic_has_the_awkward_cases(normal_run):
    clicks = [e for stream, e in normal_run if stream == "clickstream"]
    orders = [e for stream, e in normal_run if e.event_type == "order_placed"]
    flags = Counter(e.is_new_visitor for e in clicks)
    assert flags[True] and flags[False] and flags[None]
    visitor_sessions = defaultdict(set)
    session_ts = defaultdict(list)
    for e in clicks:
        visitor_sessions[e.visitor_id].add(e.session_id)
        session_ts[e.session_id].append(e.ts)
    assert any(len(s) > 1 for s in visitor_sessions.values()), "no returning visitors"
    assert any(ts[0] // (5 * MINUTE) != ts[-1] // (5 * MINUTE) for ts in session_ts.values())
    assert sum(len(ts) == 1 for ts in session_ts.values()) > 100, "no bounces"
    assert len({e.source for e in clicks}) > 8
    assert set(SOURCES) == {e.source for e in clicks}
    assert {e.device for e in clicks} == {"desktop", "mobile", "tablet", "other"}
    assert Counter(o.is_first_order for o in orders).keys() == {True, False, None}
    assert {o.currency for o in orders} == {"USD", "EUR"}
    items = [i for o in orders for i in o.items]
    assert any(i.unit_cost is None for i in items) and any(i.unit_cost is not None for i in items)
    refunds = [e for _, e in normal_run if e.event_type == "order_refunded"]
    assert all(r.refund_amount and r.refund_amount > 0 for r in refunds)
    notes = [e for _, e in normal_run if e.event_type == "agent_replied" and e.public is False]
    assert notes


def test_some_sessions_pause_for_more_than_30_minutes():
    evs = events(45 * 60, rate=5, funnel=Funnel(long_gap_rate=0.2))
    session_ts = defaultdict(list)
    for stream, e in evs:
        if stream == "clickstream":
            session_ts[e.session_id].append(e.ts)
    gaps = [b - a for ts in session_ts.values() for a, b in itertools.pairwise(ts)]
    long_gaps = sum(gap > 30 * MINUTE for gap in gaps)
    assert 0 < long_gaps < 0.1 * len(gaps)
    assert all(gap <= 10 * MINUTE or gap > 30 * MINUTE for gap in gaps), "ordinary gaps stay well under the timeout"


def test_checkout_outage_stops_purchases_after_the_switch():
    generator = TrafficGenerator(GeneratorConfig(rate=25, seed=2), START)
    before = generator.advance(START + 10 * MINUTE)
    generator.scenario = "checkout-outage"
    after = generator.advance(START + 20 * MINUTE)
    assert count(before, "purchase") > 0 and count(before, "order_placed") > 0
    assert count(after, "purchase") == 0 and count(after, "order_placed") == 0
    for still_going in ("product_view", "add_to_cart", "begin_checkout"):
        assert count(after, still_going) > 0.5 * count(before, still_going)


def test_support_surge_means_more_tickets_and_slower_replies():
    def tickets(scenario: str) -> tuple[int, float]:
        evs = events(30 * 60, rate=10, seed=3, scenario=scenario)
        created = {e.ticket_id: e.ts for _, e in evs if e.event_type == "ticket_created"}
        first_reply: dict[str, int] = {}
        for _, e in evs:
            if e.event_type == "agent_replied" and e.public and e.ticket_id in created:
                first_reply.setdefault(e.ticket_id, e.ts - created[e.ticket_id])
        return len(created), statistics.median(first_reply.values())

    normal_count, normal_delay = tickets("normal")
    surge_count, surge_delay = tickets("support-surge")
    assert surge_count >= 3 * normal_count
    assert surge_delay > normal_delay


def test_duplicates_repeat_the_event_right_after():
    evs = events(120, rate=50, duplicate_fraction=0.05)
    repeats = [b for a, b in itertools.pairwise(evs) if a[1].event_id == b[1].event_id]
    assert len(repeats) > 0.02 * len(evs)
    assert len(evs) - len({e.event_id for _, e in evs}) == len(repeats)


def test_late_events_are_two_hours_behind():
    evs = events(120, rate=50, late_fraction=0.05)
    max_ts, late = 0, []
    for stream, e in evs:
        if e.ts <= max_ts - 3_600_000:
            late.append(stream)
        max_ts = max(max_ts, e.ts)
    assert len(late) > 0.02 * len(evs)
    assert set(late) == {"clickstream"}


def test_rate_matches_the_configuration():
    evs = events(600, rate=40, seed=11)
    assert 0.7 * 40 <= len(evs) / 600 <= 1.3 * 40
    assert all(START <= e.ts < START + 10 * MINUTE for _, e in evs)


def test_unknown_scenario_is_refused():
    assert "normal" in SCENARIOS
    with pytest.raises(ValueError, match="unknown scenario"):
        TrafficGenerator(GeneratorConfig(scenario="black-friday"), START)
    generator = TrafficGenerator(GeneratorConfig(rate=1), START)
    with pytest.raises(ValueError):
        generator.scenario = "black-friday"


class ListSink(EventSink):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, Event]] = []

    async def send(self, stream: str, event: Event) -> None:
        self.sent[(stream, event.event_type)] += 1
        self.events.append((stream, event))


async def test_offline_run_sends_the_generated_events():
    config = GeneratorConfig(rate=50, seed=4)
    sink = ListSink()
    counts = await run(config, sink, duration_s=90, realtime=False, start_ms=START, show_progress=False)
    expected = events(90, rate=50, seed=4)
    assert [encode(e) for _, e in sink.events] == [encode(e) for _, e in expected]
    assert counts == sink.sent


async def test_realtime_run_uses_the_wall_clock():
    sink = ListSink()
    began = int(time.time() * 1000)
    await run(GeneratorConfig(rate=50, seed=4), sink, duration_s=0.5, realtime=True, show_progress=False)
    assert sink.events
    assert all(began - 1000 <= e.ts <= began + 1500 for _, e in sink.events)
