"""Watermark records (docs/events.md, "Watermark records"): a replay's end or a producer's
heartbeat moves a partition's event time; it is never counted as an event, and a bad one is
dead-lettered. In-process: the core's `Pipeline`, as the worker drives it. Through Kafka, the
replay test: tests/test_event_time_kafka.py."""

from __future__ import annotations

import inprocess
import msgspec
import oracle
import orjson
import pytest
from conftest import DATASETS

from shoppulse.cli.replay import end_watermark_after_ms
from shoppulse.settings import Settings
from shoppulse.streams.events import WatermarkRecord, parse
from shoppulse.streams.pipeline import Pipeline, RawRecord
from shoppulse.tools.replay import read_events

MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000  # an hour boundary
NOW = T0 + 86_400_000  # the wall clock: a day after the events


def click(i: int, ts_ms: int, visitor: str = "v1") -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e{i}",
            "event_type": "page_view",
            "ts": ts_ms,
            "session_id": f"s-{visitor}",
            "visitor_id": visitor,
        }
    )


def one_partition() -> Pipeline:
    return Pipeline(Settings(partitions=1, windows_seconds=(60,), grace_seconds=5, session_timeout_seconds=120))


def finals(pipeline: Pipeline, kpi: str) -> dict[int, object]:
    """Final values from T0 on (the window before the first event is final, as zero, at once)."""
    return {
        r.start_ms: v.value
        for r in pipeline.results
        if r.final and r.start_ms >= T0
        for v in r.values
        if v.kpi == kpi and not v.dimensions
    }


def test_the_rees46_replay_ending_with_watermark_records_is_final_and_exact_without_any_idle_time():
    """Default settings (30 min sessions, 1 h windows): every window, sessions included, is final
    from the watermark records alone, and equals the oracle."""
    events = [(s, msgspec.to_builtins(e)) for s, e in read_events("rees46", DATASETS / "rees46-2019-oct-head.csv")]
    settings = Settings()
    records = inprocess.run(events, settings, end_watermark_after_ms=end_watermark_after_ms(settings))
    kept, _late = oracle.drop_late(events)
    expected = {k: v for k, v in oracle.compute(kept).items() if k[0] != "hit_rate"}  # no tickets in REES46
    problems = oracle.compare(expected, [r for r in records if r["final"]])
    assert not problems, "\n".join(problems[:30]) + f"\n... {len(problems)} problems"
    assert {("sessions", "1h"), ("sessions", "5m"), ("page_views", "1h")} <= {(k[0], k[1]) for k in expected}


def test_without_the_watermark_records_the_last_windows_stay_open():
    """The counterpart: the same replay, no watermark record and no idle time, leaves the last
    windows and sessions open (what the records are for)."""
    events = [(s, msgspec.to_builtins(e)) for s, e in read_events("rees46", DATASETS / "rees46-2019-oct-head.csv")]
    settings = Settings()
    with_marks = inprocess.run(events, settings, end_watermark_after_ms=end_watermark_after_ms(settings))
    without = inprocess.run(events, settings, end_watermark_after_ms=0)  # records at the last event: no move
    final = lambda records: {oracle.key_of(r) for r in records if r["final"]}  # noqa: E731
    assert final(without) < final(with_marks)
    assert any(key[0] == "sessions" for key in final(with_marks) - final(without))


def test_a_heartbeat_moves_a_sparse_partition_and_closes_its_windows_and_sessions():
    pipeline = one_partition()
    pipeline.feed("clickstream", 0, [RawRecord(0, click(1, T0 + 10_000)), RawRecord(1, click(2, T0 + 20_000))], NOW)
    assert finals(pipeline, "page_views") == {}
    heartbeat = orjson.dumps({"watermark": T0 + MINUTE + 5_000})  # the 1 m window + grace
    pipeline.feed("clickstream", 0, [RawRecord(2, heartbeat)], NOW)
    assert finals(pipeline, "page_views") == {T0: 2}
    assert finals(pipeline, "pages_per_session") == {}  # its session may still go on (120 s timeout)
    later = orjson.dumps({"watermark": T0 + 20_000 + 120_001 + 5_000})
    pipeline.feed("clickstream", 0, [RawRecord(3, later)], NOW)
    assert finals(pipeline, "pages_per_session")[T0] == 2


def test_a_watermark_record_is_no_event_and_what_it_passed_is_late():
    pipeline = one_partition()
    mark = RawRecord(0, orjson.dumps({"watermark": T0 + 3 * MINUTE}))
    fed = pipeline.feed(
        "clickstream", 0, [mark, RawRecord(1, click(1, T0 + 10_000)), RawRecord(2, click(2, T0 + 3 * MINUTE))], NOW
    )
    assert (fed.accepted, fed.late, fed.invalid, fed.duplicates, fed.watermarks) == (1, 1, 0, 0, 1)
    assert [d.reason for d in fed.dead_letters] == ["late"]
    again = pipeline.feed("clickstream", 0, [RawRecord(3, mark.value)], NOW)  # behind now: no move, not deduplicated
    assert (again.accepted, again.watermarks, again.dead_letters) == (0, 1, [])


def test_a_watermark_never_moves_event_time_past_the_wall_clock():
    pipeline = one_partition()
    wall = T0 + 10 * MINUTE
    pipeline.feed("clickstream", 0, [RawRecord(0, orjson.dumps({"watermark": wall + 3_600_000}))], wall)
    engine = pipeline.sources["clickstream"].engine(0)
    assert engine.watermark.value == wall
    fed = pipeline.feed("clickstream", 0, [RawRecord(1, click(1, wall - 2_000))], wall)  # a live event just after
    assert fed.accepted == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"watermark": 1.5}', "wrong_type"),
        (b'{"watermark": null}', "wrong_type"),
        (b'{"watermark": "yesterday"}', "invalid_value"),
        (b'{"watermark": "2023-11-14T22:00:00"}', "invalid_value"),  # no zone
        (b'{"watermark": -1}', "invalid_value"),
        (b'{"watermark": 1700000000000, "partition": 3}', "invalid_value"),  # unknown field: not a watermark
        (b'{"watermark": 9999999999999}', "future_timestamp"),
        (b'{"ts": 1700000000000}', "missing_field"),  # neither an event nor a watermark record
    ],
)
def test_a_bad_watermark_record_is_dead_lettered_with_a_reason(payload, reason):
    pipeline = one_partition()
    fed = pipeline.feed("clickstream", 0, [RawRecord(0, payload)], NOW)
    assert (fed.invalid, fed.watermarks, [d.reason for d in fed.dead_letters]) == (1, 0, [reason])
    assert pipeline.sources["clickstream"].engine(0).watermark.value == 0


@pytest.mark.parametrize("stream", ["clickstream", "orders", "tickets"])
@pytest.mark.parametrize("value", [1_700_000_000_000, "2023-11-14T22:13:20Z", "2023-11-14T23:13:20+01:00"])
def test_every_stream_reads_the_documented_forms(stream, value):
    parsed = parse(stream, orjson.dumps({"watermark": value}), now_ms=NOW)
    assert parsed.event == WatermarkRecord(watermark=value) and parsed.ts_ms == 1_700_000_000_000
