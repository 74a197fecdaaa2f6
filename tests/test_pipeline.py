"""The transport-free driver: dead letters that say what and where, batch counts, and a
restart from the written state that changes no result."""

from __future__ import annotations

from datetime import UTC, datetime

import inprocess
import orjson
from core_events import at, item, order, settings, ticket

from shoppulse.streams.events import encode
from shoppulse.streams.pipeline import RawRecord, SourceDriver

NOW_MS = at(100)


def record(offset: int, parsed_or_bytes, key: bytes | None = b"k") -> RawRecord:
    value = parsed_or_bytes if isinstance(parsed_or_bytes, bytes) else encode(parsed_or_bytes.event)
    return RawRecord(offset, value, key)


def test_dead_letters_carry_reason_topic_partition_and_offset():
    driver = SourceDriver("orders", settings(), "shop-orders")
    first = order("order_placed", 1, event_id="a", items=[item("p", 1, 2.0)])
    future = order("order_placed", 100 + 86_400 + 1, event_id="f")  # over a day ahead of the clock
    result = driver.feed(
        3,
        [
            record(10, first),
            record(11, b"not json", key=b"bad"),
            record(12, order("order_placed", 80, event_id="b")),
            record(13, order("order_placed", 5, event_id="c")),  # late: its minute closed at 60 s + 10 s grace
            record(14, first),  # a duplicate
            record(15, future),
        ],
        NOW_MS,
    )
    assert (result.accepted, result.duplicates, result.late, result.invalid) == (2, 1, 1, 2)
    letters = [(d.reason, d.key, orjson.loads(d.value)) for d in result.dead_letters]
    assert [(reason, key, v["source_offset"]) for reason, key, v in letters] == [
        ("invalid_json", b"bad", 11),
        ("future_timestamp", b"k", 15),
        ("late", b"k", 13),  # the late one's own offset, though an invalid record came before it
    ]
    for reason, _key, value in letters:
        assert (value["reason"], value["source_topic"], value["source_partition"]) == (reason, "shop-orders", 3)
        assert value["dead_lettered_at_ms"] == NOW_MS
    assert letters[0][2]["payload"] == "not json"


def test_feed_result_carries_first_response_and_resolution_times():
    driver = SourceDriver("tickets", settings(), "tickets")
    events = [
        ticket("ticket_created", 0, priority="high", channel="chat"),
        ticket("agent_replied", 90),
        ticket("ticket_solved", 95),
    ]
    result = driver.feed(0, [record(i, e) for i, e in enumerate(events)], NOW_MS)
    assert result.first_response_seconds == [(90.0, "chat", "high")]
    assert result.resolution_seconds == [95.0]
    assert driver.take_changes(0) and driver.take_changes(1) == {}, "partition 1 was never fed"


def _events() -> list[tuple[str, dict]]:
    """Two orders in the first minute, clicks of two visitors, one ticket, then later traffic."""
    pairs = [
        ("clickstream", {"event_type": "page_view", "ts": at(1), "visitor_id": "v1", "session_id": "s1"}),
        ("orders", {"event_type": "order_placed", "ts": at(2), "order_id": "o1", "customer_id": "c1", "items": []}),
        ("clickstream", {"event_type": "add_to_cart", "ts": at(3), "visitor_id": "v1", "session_id": "s1"}),
        ("tickets", {"event_type": "ticket_created", "ts": at(4), "ticket_id": "t1"}),
        ("orders", {"event_type": "order_placed", "ts": at(30), "order_id": "o2", "customer_id": "c2", "items": []}),
        ("clickstream", {"event_type": "page_view", "ts": at(65), "visitor_id": "v2", "session_id": "s2"}),
        ("tickets", {"event_type": "agent_replied", "ts": at(70), "ticket_id": "t1"}),
        ("orders", {"event_type": "order_cancelled", "ts": at(130), "order_id": "o1", "customer_id": "c1"}),
        ("clickstream", {"event_type": "purchase", "ts": at(200), "visitor_id": "v1", "session_id": "s1"}),
    ]
    return [(stream, {"event_id": f"e{i}", **event}) for i, (stream, event) in enumerate(pairs)]


def test_a_restart_after_every_batch_gives_the_final_results_of_an_uninterrupted_run():
    events = _events()
    uninterrupted = _finals_of_windows_with_events(inprocess.run(events, batch=1), events)
    restarted = _finals_of_windows_with_events(inprocess.run(events, batch=1, restart_every=1), events)
    assert restarted == uninterrupted
    orders = {r["window_start"]: r["value"] for r in uninterrupted if r["kpi"] == "orders" and r["window"] == "1m"}
    assert orders == {_iso(at(0)): 2, _iso(at(120)): 0}  # o1 and o2; the cancellation is no order


def _finals_of_windows_with_events(records: list[dict], events: list[tuple[str, dict]]) -> list[dict]:
    """Final records of the windows some event fell in (the zero windows around them depend on
    when each partition first reports, which a restart may change)."""
    starts = {
        (label, _iso(event["ts"] - event["ts"] % (seconds * 1000)))
        for _, event in events
        for label, seconds in (("1m", 60), ("5m", 300), ("1h", 3600))
    }
    kept = [r for r in records if r["final"] and (r["window"], r["window_start"]) in starts]
    return sorted(kept, key=lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
