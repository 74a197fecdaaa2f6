"""Replay conversions of the real data sets: counts checked against the raw CSVs, and valid events."""

from __future__ import annotations

import csv
import itertools
import time
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from shoppulse.streams.events import Event, encode, parse, parse_ts
from shoppulse.tools.replay import read_events, replay
from shoppulse.tools.sink import EventSink

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
REES46 = DATASETS / "rees46-2019-oct-head.csv"
RETAIL = DATASETS / "uci-online-retail-2010-dec-head.csv"
INCIDENTS = DATASETS / "uci-incident-event-log-head.csv"
YEAR_2100_MS = 4_102_444_800_000  # `now` for parsing: no replayed event is "in the future"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def counts(events: list[tuple[str, Event]]) -> Counter:
    return Counter((stream, event.event_type) for stream, event in events)


class MemorySink(EventSink):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[str, bytes, bytes]] = []

    async def write(self, stream: str, key: bytes, value: bytes) -> None:
        self.messages.append((stream, key, value))


@pytest.fixture(scope="module")
def rees46() -> list[tuple[str, Event]]:
    return list(read_events("rees46", REES46))


@pytest.fixture(scope="module")
def retail() -> list[tuple[str, Event]]:
    return list(read_events("online-retail", RETAIL))


@pytest.fixture(scope="module")
def incidents() -> list[tuple[str, Event]]:
    return list(read_events("incident-log", INCIDENTS))


@pytest.mark.parametrize("name", ["rees46", "retail", "incidents"])
def test_events_are_valid_unique_and_in_ts_order(name, request):
    events = request.getfixturevalue(name)
    for stream, event in events:
        parse(stream, encode(event), now_ms=YEAR_2100_MS)
    timestamps = [event.ts for _, event in events]
    assert timestamps == sorted(timestamps)
    assert len({event.event_id for _, event in events}) == len(events)


# ------------------------------------------------------------------ rees46


def test_rees46_counts(rees46):
    source = rows(REES46)
    by_type = Counter(row["event_type"] for row in source)
    orders = {(row["user_session"], row["event_time"]) for row in source if row["event_type"] == "purchase"}
    assert counts(rees46) == {
        ("clickstream", "product_view"): by_type["view"],
        ("clickstream", "add_to_cart"): by_type["cart"],
        ("clickstream", "purchase"): by_type["purchase"],
        ("orders", "order_placed"): len(orders),
    }
    # The README's figures.
    assert (by_type["view"], by_type["cart"], by_type["purchase"], len(orders)) == (17_055, 165, 214, 214)


def test_rees46_orders_hold_the_purchased_items(rees46):
    purchases = [row for row in rows(REES46) if row["event_type"] == "purchase"]
    orders = [event for stream, event in rees46 if stream == "orders"]
    assert sum(item.quantity for order in orders for item in order.items) == len(purchases)
    first = purchases[0]
    order = next(o for o in orders if o.session_id == first["user_session"])
    assert order.customer_id == order.visitor_id == first["user_id"]
    assert order.currency == "USD"
    assert order.items[0].product_id == first["product_id"]
    assert order.items[0].unit_price == float(first["price"])
    assert order.ts == parse_ts(first["event_time"].replace(" UTC", "+00:00"))


def test_rees46_same_product_twice_in_one_order_and_empty_session(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(
        "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
        "2019-10-01 00:00:00 UTC,view,1,9,,,5.00,42,\n"
        "2019-10-01 00:00:05 UTC,purchase,1,9,,,5.00,42,s1\n"
        "2019-10-01 00:00:05 UTC,purchase,2,9,,,7.50,42,s1\n"
        "2019-10-01 00:00:05 UTC,purchase,1,9,,,5.00,42,s1\n"
    )
    events = list(read_events("rees46", path))
    assert events[0][1].session_id == "u42"
    assert events[0][1].event_id == "rees46-2"
    (order,) = [event for stream, event in events if stream == "orders"]
    assert [(i.product_id, i.quantity, i.unit_price) for i in order.items] == [("1", 2, 5.0), ("2", 1, 7.5)]
    assert events[-1][1] is order  # after the purchase clicks of the same second


# ------------------------------------------------------------------ online retail


def test_online_retail_counts(retail):
    lines_by_invoice: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows(RETAIL):
        lines_by_invoice[row["InvoiceNo"]].append(row)
    cancellations = {number for number in lines_by_invoice if number.startswith("C")}
    # Ordinary invoices made only of negative lines are stock write-offs, not orders.
    write_offs = {
        number
        for number, lines in lines_by_invoice.items()
        if number not in cancellations and all(int(line["Quantity"]) < 0 for line in lines)
    }
    assert (len(lines_by_invoice), len(cancellations), len(write_offs)) == (1_275, 156, 67)
    assert counts(retail) == {
        ("orders", "order_placed"): len(lines_by_invoice) - len(cancellations) - len(write_offs),
        ("orders", "order_cancelled"): len(cancellations),
    }
    assert {event.order_id for _, event in retail} == set(lines_by_invoice) - write_offs


def test_online_retail_items(retail):
    orders = {event.order_id: event for _, event in retail}
    assert all(item.quantity > 0 and item.unit_price >= 0 for order in orders.values() for item in order.items)
    placed, cancelled = orders["536365"], orders["C536379"]
    assert placed.event_type == "order_placed"
    assert (placed.customer_id, placed.currency, placed.channel) == ("17850", "GBP", "online")
    assert (placed.items[0].product_id, placed.items[0].quantity, placed.items[0].unit_price) == ("85123A", 6, 2.55)
    assert len(placed.items) == 7
    assert cancelled.event_type == "order_cancelled"
    assert cancelled.items[0].quantity == 1  # Quantity -1
    guests = {row["InvoiceNo"] for row in rows(RETAIL) if not row["CustomerID"]}
    assert all(order.customer_id is None for number, order in orders.items() if number in guests)
    # 536591 has lines at 16:57 and 16:58: the order is at the earliest.
    assert orders["536591"].ts == parse_ts("2010-12-01T16:57:00+00:00")


# ------------------------------------------------------------------ incident log


def test_incident_log_counts(incidents):
    states: dict[str, list[str]] = defaultdict(list)
    priorities: dict[str, list[str]] = defaultdict(list)
    for row in rows(INCIDENTS):
        states[row["number"]].append(row["incident_state"])
        priorities[row["number"]].append(row["priority"])
    transitions = Counter()
    for sequence in states.values():
        sequence = ["New"] + sequence  # a ticket is New when created
        transitions.update((a, b) for a, b in itertools.pairwise(sequence) if a != b)
    solved = {"Resolved", "Closed"}
    reopens = sum(n for (a, b), n in transitions.items() if a in solved and b not in solved)
    # "1 - Critical" < "2 - High" < ...: a smaller leading digit is a higher priority.
    escalations = sum(b < a for sequence in priorities.values() for a, b in itertools.pairwise(sequence))
    public_replies = transitions[("New", "Active")] + sum(
        n for (a, b), n in transitions.items() if b == "Awaiting User Info" and a not in solved
    )
    internal_notes = sum(
        n for (a, b), n in transitions.items() if b in ("Awaiting Problem", "Awaiting Vendor", "Awaiting Evidence")
    )
    assert all("Resolved" in sequence for sequence in states.values())
    assert len(states) == 890  # README
    produced = counts(incidents)
    assert produced == {
        ("tickets", "ticket_created"): len(states),
        ("tickets", "ticket_solved"): len(states) + reopens,  # every incident is resolved, again after each reopen
        ("tickets", "ticket_reopened"): reopens,
        ("tickets", "ticket_escalated"): escalations,
        ("tickets", "customer_replied"): transitions[("Awaiting User Info", "Active")],
        ("tickets", "agent_replied"): public_replies + internal_notes,
    }
    replies = Counter(event.public for _, event in incidents if event.event_type == "agent_replied")
    assert replies == {True: public_replies, False: internal_notes}
    # Pinned so a mapping change shows up here.
    assert (reopens, escalations, public_replies, internal_notes) == (11, 25, 865, 41)


def test_incident_ticket_lifecycles_are_ordered(incidents):
    by_ticket: dict[str, list[Event]] = defaultdict(list)
    for _, event in incidents:
        by_ticket[event.ticket_id].append(event)
    for events in by_ticket.values():
        assert events[0].event_type == "ticket_created"
        assert [e.ts for e in events] == sorted(e.ts for e in events)
    first = by_ticket["INC0000045"]
    assert [e.event_type for e in first] == ["ticket_created", "ticket_solved"]
    assert first[0].ts == parse_ts("2016-02-29T01:16:00+00:00")
    assert first[1].ts == parse_ts("2016-02-29T08:53:00+00:00")  # when the state became Resolved
    assert (first[0].priority, first[0].channel, first[0].customer_id, first[0].category) == (
        "normal",
        "phone",
        "Caller 2403",
        "Category 55",
    )


# ------------------------------------------------------------------ jsonl and replay


async def test_jsonl_round_trip_and_invalid_lines(tmp_path, rees46):
    path = tmp_path / "events.jsonl"
    stream, event = rees46[0]
    good = orjson.loads(encode(event)) | {"topic": stream}
    untopiced = orjson.loads(encode(rees46[1][1]))
    path.write_bytes(
        orjson.dumps(good)
        + b"\n"
        + b"{not json\n"
        + b"\n"
        + orjson.dumps(untopiced)
        + b"\n"
        + orjson.dumps({"topic": "orders", "event_id": "x"})
        + b"\n"
    )
    with pytest.raises(ValueError, match=r"events.jsonl:2: not a valid clickstream event"):
        list(read_events("jsonl", path, topic="clickstream"))
    sink = MemorySink()
    with pytest.raises(ValueError, match=r"events.jsonl:2: no `topic` field"):
        await replay("jsonl", path, sink, show_progress=False)
    assert sink.messages == [], "a file with a bad line sends nothing"
    await replay("jsonl", path, sink, show_progress=False, topic="clickstream")
    assert [s for s, _, _ in sink.messages] == ["clickstream", "clickstream", "clickstream", "orders"]
    assert sink.messages[0] == ("clickstream", event.visitor_id.encode(), orjson.dumps(good))
    assert sink.messages[1] == ("clickstream", b"", b"{not json")
    assert sink.messages[3][1] == b""


async def test_replay_jsonl_forwards_invalid_lines_unchanged(tmp_path, rees46):
    path = tmp_path / "events.jsonl"
    line = orjson.dumps(orjson.loads(encode(rees46[0][1])) | {"topic": "clickstream"})
    path.write_bytes(line + b"\n" + b'{"topic": "tickets", "event_type": "ticket_created"}\n')
    sink = MemorySink()
    sent = await replay("jsonl", path, sink, show_progress=False)
    assert sent == {("clickstream", "product_view"): 1, ("tickets", "invalid"): 1}
    assert sink.messages == [
        ("clickstream", rees46[0][1].visitor_id.encode(), line),
        ("tickets", b"", b'{"topic": "tickets", "event_type": "ticket_created"}'),
    ]


async def test_replay_converts_and_counts():
    sink = MemorySink()
    sent = await replay("online-retail", RETAIL, sink, show_progress=False)
    assert sent == sink.sent == counts(list(read_events("online-retail", RETAIL)))
    assert len(sink.messages) == sum(sent.values())


async def test_rebase_time_keeps_gaps_and_speed_paces(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(
        "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
        "2019-10-01 00:00:00 UTC,view,1,9,,,5.00,42,s\n"
        "2019-10-01 00:00:01 UTC,view,2,9,,,5.00,42,s\n"
        "2019-10-01 00:00:03 UTC,cart,2,9,,,5.00,42,s\n"
    )
    sink = MemorySink()
    before = int(time.time() * 1000)
    started = time.monotonic()
    await replay("rees46", path, sink, speed=20, rebase_time=True, show_progress=False)
    elapsed = time.monotonic() - started
    timestamps = [orjson.loads(value)["ts"] for _, _, value in sink.messages]
    assert all(isinstance(ts, int) for ts in timestamps)
    assert before <= timestamps[0] <= int(time.time() * 1000)
    assert [ts - timestamps[0] for ts in timestamps] == [0, 1000, 3000]
    assert elapsed >= 3 / 20 * 0.9  # 3 s of event time at 20x
