"""The stream clock (streams/clock.py) and idle partitions, without Kafka: the rule itself, and
the in-process pipeline driving engines and merge stage as a worker does."""

from __future__ import annotations

import orjson
import pytest

from shoppulse.config import load_settings
from shoppulse.errors import SettingsError
from shoppulse.kafka.options import bootstrap_servers
from shoppulse.settings import Settings
from shoppulse.streams.clock import StreamClocks, decode_clocks, encode_clocks
from shoppulse.streams.partials import Progress
from shoppulse.streams.pipeline import Pipeline, RawRecord

EVENT_MS = 1_569_888_000_000  # 2019-10-01 00:00 UTC: a historical replay
WALL_MS = 1_800_000_000_000  # the wall clock, years later


def status(partition: int, watermark_ms: int, idle: bool, family: str = "sales") -> Progress:
    return Progress(family, partition, 0, 0, None, idle=idle, watermark_ms=watermark_ms)


def test_clock_is_the_slowest_active_partition_and_ignores_idle_ones():
    clocks = StreamClocks()
    clocks.observe(status(0, EVENT_MS + 50_000, idle=False))
    clocks.observe(status(1, EVENT_MS + 20_000, idle=False))
    clocks.observe(status(2, EVENT_MS, idle=True))  # quiet for a while: does not hold the others back
    assert clocks.clocks(WALL_MS) == {"orders": EVENT_MS + 20_000}
    clocks.observe(status(1, EVENT_MS + 20_000, idle=True))
    assert clocks.clocks(WALL_MS) == {"orders": EVENT_MS + 50_000}


def test_an_active_partition_that_has_seen_nothing_holds_the_clock_back():
    clocks = StreamClocks()
    clocks.observe(status(0, EVENT_MS, idle=False))
    clocks.observe(status(1, 0, idle=False))  # e.g. a backlog not read yet
    assert clocks.clocks(WALL_MS) == {}


def test_no_clock_before_any_event_however_long_the_stream_is_quiet():
    clocks = StreamClocks()
    for partition in range(4):
        clocks.observe(status(partition, 0, idle=True))
    assert clocks.clocks(WALL_MS) == {}
    assert clocks.clocks(WALL_MS + 3_600_000) == {}


def test_quiet_stream_moves_at_wall_clock_speed_from_its_largest_watermark():
    clocks = StreamClocks()
    clocks.observe(status(0, EVENT_MS + 9_000, idle=True))
    clocks.observe(status(1, EVENT_MS + 4_000, idle=True))
    assert clocks.clocks(WALL_MS) == {"orders": EVENT_MS + 9_000}
    # Idle partitions adopting the clock report it back: that must not speed the clock up.
    clocks.observe(status(1, EVENT_MS + 9_000, idle=True))
    assert clocks.clocks(WALL_MS + 5_000) == {"orders": EVENT_MS + 14_000}
    # Traffic again: the active partition's event time rules.
    clocks.observe(status(0, EVENT_MS + 15_000, idle=False))
    assert clocks.clocks(WALL_MS + 6_000) == {"orders": EVENT_MS + 15_000}


def test_clock_state_survives_a_restart_and_a_quiet_stream_goes_on_from_its_watermarks():
    clocks = StreamClocks()
    clocks.observe(status(0, EVENT_MS + 60_000, idle=True))  # adopted, a minute past its last event
    clocks.observe(status(1, EVENT_MS + 1_000, idle=True))
    rows = [(key, value) for key, value in clocks.take_changes().items() if value is not None]
    restored = StreamClocks()
    restored.restore(rows)
    assert restored.clocks(WALL_MS) == {"orders": EVENT_MS + 60_000}
    assert restored.clocks(WALL_MS + 2_000) == {"orders": EVENT_MS + 62_000}


def test_a_stream_quiet_since_the_start_follows_the_live_streams():
    """A checkout outage from the first second: no order ever, yet the sales windows close."""
    clocks = StreamClocks()
    live_ms = WALL_MS - 20_000
    clocks.observe(status(0, live_ms, idle=False, family="traffic"))
    for partition in range(4):
        clocks.observe(status(partition, 0, idle=True))
    assert clocks.clocks(WALL_MS) == {"clickstream": live_ms, "orders": live_ms}
    # Its partitions adopt it and report it: from then on the stream has its own (quiet) clock.
    for partition in range(4):
        clocks.observe(status(partition, live_ms, idle=True))
    clocks.observe(status(0, live_ms + 1_000, idle=False, family="traffic"))
    assert clocks.clocks(WALL_MS + 3_000) == {"clickstream": live_ms + 1_000, "orders": live_ms}
    assert clocks.clocks(WALL_MS + 5_000)["orders"] == live_ms + 2_000


def test_a_stream_quiet_since_the_start_never_follows_a_replay():
    """Old events on one stream must not make the first events of another (older still) late."""
    clocks = StreamClocks()
    clocks.observe(status(0, EVENT_MS, idle=False, family="support"))
    for partition in range(4):
        clocks.observe(status(partition, 0, idle=True))
    assert clocks.clocks(WALL_MS) == {"tickets": EVENT_MS}


def test_clock_record_round_trip():
    value = encode_clocks({"orders": EVENT_MS, "tickets": EVENT_MS + 1}, WALL_MS)
    assert decode_clocks(value) == {"orders": EVENT_MS, "tickets": EVENT_MS + 1}


# ------------------------------------------------------------------ the pipeline


def _order(n: int, ts_ms: int, customer: str) -> RawRecord:
    event = {
        "event_id": f"o{n}",
        "event_type": "order_placed",
        "ts": ts_ms,
        "order_id": f"order-{n}",
        "customer_id": customer,
        "currency": "EUR",
        "items": [{"product_id": "p1", "quantity": 1, "unit_price": 10.0}],
    }
    return RawRecord(n, orjson.dumps(event), customer.encode())


def _final_orders(pipeline: Pipeline) -> dict[int, float]:
    """Final 1-minute `orders` counts by window start."""
    return {
        r.start_ms: v.value
        for r in pipeline.results
        if r.final and r.family == "sales" and r.size_ms == 60_000
        for v in r.values
        if v.kpi == "orders"
    }


def _settings() -> Settings:
    return Settings(partitions=4, idle_timeout_seconds=2, grace_seconds=5)


def test_worker_idle_for_long_then_a_historical_replay_on_one_partition_is_not_late():
    pipeline = Pipeline(_settings())
    for second in range(0, 120, 1):  # a worker running for two minutes without traffic
        pipeline.tick(WALL_MS + second * 1000)
    now = WALL_MS + 120_000
    result = pipeline.feed("orders", 2, [_order(i, EVENT_MS + i * 20_000, "c1") for i in range(6)], now)
    assert (result.accepted, result.late) == (6, 0)
    for second in range(1, 200):  # the other partitions never get a record
        pipeline.tick(now + second * 1000)
    finals = _final_orders(pipeline)
    assert finals[EVENT_MS] == 3 and finals[EVENT_MS + 60_000] == 3
    assert max(finals) < now - 3_600_000, "windows must close in the replay's time, not the wall clock's"


def test_events_older_than_the_final_progress_are_dead_lettered_late_even_on_an_idle_partition():
    pipeline = Pipeline(_settings())
    now = WALL_MS
    pipeline.feed("orders", 0, [_order(i, EVENT_MS + i * 30_000, "c1") for i in range(10)], now)
    for second in range(1, 60):
        pipeline.tick(now + second * 1000)
    assert EVENT_MS in _final_orders(pipeline)
    # Partition 3 never had a record; it adopted the clock, so an old event there is late.
    result = pipeline.feed("orders", 3, [_order(100, EVENT_MS + 1_000, "c9")], now + 61_000)
    assert (result.accepted, result.late) == (0, 1)
    assert [letter.reason for letter in result.dead_letters] == ["late"]


def test_a_restarted_engine_keeps_the_adopted_progress_and_late_stays_late():
    pipeline = Pipeline(_settings(), durable=True)
    now = WALL_MS
    pipeline.feed("orders", 0, [_order(i, EVENT_MS + i * 30_000, "c1") for i in range(10)], now)
    for second in range(1, 60):
        pipeline.tick(now + second * 1000)
    final_through = max(_final_orders(pipeline)) + 60_000
    pipeline.restart()
    # Partition 1 adopted the clock on ticks only (no batch); its state must still hold that.
    result = pipeline.feed("orders", 1, [_order(200, final_through - 30_000, "c7")], now + 61_000)
    assert (result.accepted, result.late) == (0, 1)


# ------------------------------------------------------------------ broker addresses


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:9092", "127.0.0.1:9092"),
        ("kafka://127.0.0.1:9092", "127.0.0.1:9092"),
        ("kafka://a:9092, kafka://b:9093", "a:9092,b:9093"),
        ("a:9092,KAFKA://b:9093", "a:9092,b:9093"),
    ],
)
def test_broker_accepts_kafka_urls_and_lists(given, expected):
    settings = load_settings(environ={"SHOPPULSE_BROKER": given})
    assert settings.broker == expected
    assert load_settings(flag_overrides={"broker": given}, environ={}).broker == expected
    assert bootstrap_servers(given) == expected.split(",")


@pytest.mark.parametrize("given", ["kafka://", "a:9092,", "http://a:9092", "a", "kafka://a:99999"])
def test_broker_rejects_what_is_not_host_port(given):
    with pytest.raises(SettingsError, match="is not HOST:PORT or kafka://HOST:PORT"):
        load_settings(environ={"SHOPPULSE_BROKER": given})
