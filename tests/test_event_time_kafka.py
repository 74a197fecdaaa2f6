"""Event time on a running worker (issue 10), through the real broker: replays into a worker
that has been idle, at any speed; sparse partitions on two workers; late events after the
final; and all traffic stopping. Expected values come from the batch recomputation (oracle).

Short windows, grace and session timeout keep the tests quick: a quiet stream's clock moves
at wall-clock speed, so windows that only the idle rule closes close one window + grace after
it goes quiet. (A replay's own end closes its windows at once: its watermark records.)
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import datetime

import msgspec
import oracle
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from conftest import DATASETS
from test_kpis_kafka import SAMPLES, _events_total, _holds_partitions_of, _update_contract_problems

from shoppulse.kafka.partitioner import partition_for
from shoppulse.streams.events import key_of, parse
from shoppulse.tools.generate import GeneratorConfig, generate_events
from shoppulse.tools.replay import read_events

pytestmark = pytest.mark.integration

# The worker's and the oracle's settings, the same on both sides.
WORKER = {
    "idle_timeout_seconds": 1,
    "grace_seconds": 5,
    "session_timeout_seconds": 30,
    "windows_seconds": "30,120",
}
ORACLE = {"windows_s": (30, 120), "session_timeout_s": 30}
LIVE_WINDOWS = "10,60"  # the all-traffic-stops test: no oracle, short windows
SPEED = 200


def _expected(events) -> dict:
    kept, _late = oracle.drop_late(events, grace_s=WORKER["grace_seconds"], smallest_window_s=30)
    return oracle.compute(kept, **ORACLE)


def _assert_exact(ns, expected, workers, *, timeout: float = 420) -> list[dict]:
    wanted = oracle.required_keys(expected)

    def complete(records):
        return wanted <= {oracle.key_of(r) for r in records if r["final"]}

    records = ns.read_topic(ns.topics["results"], quiet_seconds=6, timeout=timeout, until=complete)
    problems = _update_contract_problems(records)
    problems += oracle.compare(expected, [r for r in records if r["final"]])
    if problems:
        outcomes = {w.metrics_port: {o: _events_total(w, o) for o in ("ok", "late", "duplicate")} for w in workers}
        pytest.fail("\n".join(problems[:30]) + f"\n{len(problems)} problems; outcomes {outcomes}\n" + ns.worker_log())
    return records


def _wait_until_idle(ns, workers, idle_timeout_s: float = WORKER["idle_timeout_seconds"]) -> None:
    """Every worker holds its partitions, and has been idle for longer than the idle timeout."""
    sources = [ns.topics[name] for name in ("clickstream", "orders", "tickets")]
    deadline = time.monotonic() + 90
    while not all(_holds_partitions_of(w, sources) for w in workers):
        assert time.monotonic() < deadline, "the workers did not get their partitions within 90 s"
        assert all(w.poll() is None for w in workers), ns.worker_log()
        time.sleep(0.5)
    time.sleep(4 * idle_timeout_s + 2)


def _largest_partition_gap_s(events, partitions: int) -> float:
    """The longest event-time gap between consecutive events of one partition of one stream."""
    last: dict[tuple[str, int], int] = {}
    gap = 0
    for stream, event in events:
        slot = (stream, partition_for(key_of(stream, event).encode(), partitions))
        if slot in last:
            gap = max(gap, event.ts - last[slot])
        last[slot] = event.ts
    return gap / 1000


def test_worker_first_then_every_sample_at_any_speed_is_exact_and_late_stays_late(namespace, tmp_path):
    """The worker runs (idle) first; then online-retail (max speed), REES46 at --speed 200 and
    the incident log (max speed, at the same time) are replayed into it. Every final KPI equals
    the batch recomputation. Then events older than the final windows are dead-lettered late."""
    ns = namespace(**WORKER)
    worker = ns.start_worker()
    _wait_until_idle(ns, [worker])

    paths = {fmt: DATASETS / name for fmt, name in SAMPLES.items()}
    typed = {fmt: list(read_events(fmt, path)) for fmt, path in paths.items()}
    assert _largest_partition_gap_s(typed["rees46"], 4) > WORKER["idle_timeout_seconds"] * SPEED, (
        "the REES46 sample has no gap longer than idle timeout x speed: the test proves nothing"
    )
    incident = subprocess.Popen(
        [sys.executable, "-m", "shoppulse.cli", "replay", "incident-log", str(paths["incident-log"]), "--quiet"],
        env=ns.env,
    )
    # online-retail first: its orders (2010) come before REES46's (2019) on the orders topic.
    result = ns.shoppulse("replay", "online-retail", str(paths["online-retail"]), "--quiet")
    assert result.returncode == 0, result.stderr
    started = time.monotonic()
    result = ns.shoppulse("replay", "rees46", str(paths["rees46"]), "--speed", str(SPEED), "--quiet")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started > 30, "the --speed replay was not paced"
    assert incident.wait(120) == 0

    events = [(s, msgspec.to_builtins(e)) for fmt in ("online-retail", "rees46", "incident-log") for s, e in typed[fmt]]
    expected = _expected(events)
    kpis = {key[0] for key in expected}
    assert {"sessions", "conversion_rate", "orders", "revenue", "open_tickets", "first_response_seconds"} <= kpis
    _assert_exact(ns, expected, [worker])
    assert _events_total(worker, "late") == 0

    # Late: new events (new ids) in REES46 windows that are final by now.
    late_path = tmp_path / "late.jsonl"
    _first_stream, first = typed["rees46"][0]
    late = []
    for n in range(5):
        event = msgspec.to_builtins(first) | {"event_id": f"late-{uuid.uuid4().hex}-{n}"}
        late.append(orjson.dumps({**event, "topic": "clickstream"}))
    late_path.write_bytes(b"\n".join(late) + b"\n")
    assert ns.shoppulse("replay", "jsonl", str(late_path), "--quiet").returncode == 0
    letters = ns.read_topic(
        ns.topics["dead_letters"],
        quiet_seconds=2,
        timeout=60,
        until=lambda rs: sum(r["reason"] == "late" for r in rs) >= 5,
    )
    assert sum(r["reason"] == "late" for r in letters) == 5, letters
    deadline = time.monotonic() + 30
    while _events_total(worker, "late") < 5:
        assert time.monotonic() < deadline, "shoppulse_events_total{outcome=late} did not count the late events"
        time.sleep(0.5)
    assert _events_total(worker, "late") == 5


def test_a_max_speed_replay_into_a_running_worker_is_final_and_exact_within_a_minute(namespace):
    """Issue 24's replay test, with the default settings (30 min sessions, 1 m, 5 m and 1 h
    windows): the worker runs first, the REES46 sample is replayed at --max-speed, and every
    final KPI equals the oracle within 60 s of the replay's end. The replay's end watermark
    records close its last windows and sessions; without them the last sessions would close
    only about 40 min later (docs/design.md)."""
    ns = namespace()
    worker = ns.start_worker()
    _wait_until_idle(ns, [worker], idle_timeout_s=0)  # it holds its partitions: that is "running first"
    path = DATASETS / SAMPLES["rees46"]
    result = ns.shoppulse("replay", "rees46", str(path), "--max-speed", "--quiet")
    assert result.returncode == 0, result.stderr
    ended = time.monotonic()
    assert "clickstream  watermark" in result.stdout, result.stdout
    events = [(s, msgspec.to_builtins(e)) for s, e in read_events("rees46", path)]
    kept, _late = oracle.drop_late(events)
    expected = {k: v for k, v in oracle.compute(kept).items() if k[0] != "hit_rate"}  # no tickets: never final
    assert {("sessions", "5m"), ("conversion_rate", "1m"), ("bounce_rate", "1h")} <= {(k[0], k[1]) for k in expected}
    wanted = oracle.required_keys(expected)

    def complete(records):
        return wanted <= {oracle.key_of(r) for r in records if r["final"]}

    records = ns.read_topic(ns.topics["results"], quiet_seconds=0.5, timeout=60, until=complete)
    took = time.monotonic() - ended
    missing = wanted - {oracle.key_of(r) for r in records if r["final"]}
    assert not missing, f"{len(missing)} finals missing {took:.0f} s after the replay, e.g. {sorted(missing)[:5]}"
    problems = oracle.compare(expected, [r for r in records if r["final"]])
    assert not problems, "\n".join(problems[:30]) + f"\n{len(problems)} problems\n" + ns.worker_log()
    assert _events_total(worker, "late") == 0
    print(f"every final of the replay read {took:.1f} s after its end")


def test_sparse_partitions_on_two_workers_are_exact(namespace, tmp_path):
    """Keys fill 2 of 8 partitions; two workers (so at least one holds empty partitions only,
    or mostly) run idle first; the generated traffic replayed then is exact."""
    filled = {1, 6}
    config = GeneratorConfig(rate=6, seed=43, duplicate_fraction=0.02)
    events = []
    for stream, event in generate_events(config, start_ms=1_700_000_000_000, duration_s=1200):
        if partition_for(key_of(stream, event).encode(), 8) in filled:
            events.append((stream, msgspec.to_builtins(event)))
    assert {stream for stream, _ in events} == {"clickstream", "orders", "tickets"}
    path = tmp_path / "sparse.jsonl"
    path.write_bytes(b"".join(orjson.dumps({**e, "topic": s}) + b"\n" for s, e in events))
    ns = namespace(partitions=8, **WORKER)
    workers = [ns.start_worker("w0"), ns.start_worker("w1")]
    _wait_until_idle(ns, workers)
    assert ns.shoppulse("replay", "jsonl", str(path), "--quiet").returncode == 0
    _assert_exact(ns, _expected(events), workers)
    for name, worker in zip(("w0", "w1"), workers):
        assert "Traceback" not in ns.worker_log(name), ns.worker_log(name)
        assert _events_total(worker, "late") == 0, f"{name} dead-lettered events as late"


def test_when_all_traffic_stops_the_following_windows_close_as_zeros(namespace):
    """Live traffic (event time = now) for a while, then nothing: the windows after the last
    event are still emitted, final, with zero page views, each within the idle timeout plus
    one window (plus grace) of its end."""
    ns = namespace(**(WORKER | {"windows_seconds": LIVE_WINDOWS}))
    worker = ns.start_worker()
    _wait_until_idle(ns, [worker])
    last_ms = asyncio.run(_live_page_views(ns, seconds=12))
    first_empty = last_ms - last_ms % 10_000 + 10_000  # the first 10 s window after the last event
    empties = [oracle.iso(first_empty + i * 10_000) for i in range(3)]

    def closed(records):
        return all(any(_is_final_page_views(r, start) for r in records) for start in empties)

    records = ns.read_topic(ns.topics["results"], quiet_seconds=1, timeout=90, until=closed)
    assert closed(records), ns.worker_log()
    allowed_s = WORKER["idle_timeout_seconds"] + 10 + WORKER["grace_seconds"] + 3  # + ticks and round trips
    for start in empties:
        record = next(r for r in records if _is_final_page_views(r, start))
        assert record["value"] == 0, record
        late_by = (
            datetime.fromisoformat(record["emitted_at"]) - datetime.fromisoformat(record["window_end"])
        ).total_seconds()
        assert late_by <= allowed_s, f"window {start} closed {late_by:.1f} s after its end (allowed {allowed_s} s)"
    before = [r for r in records if _is_final_page_views(r, None) and r["window_end"] <= oracle.iso(first_empty)]
    assert sum(r["value"] for r in before) > 0, "no page views counted before the stop: the test proves nothing"


def _is_final_page_views(record: dict, start: str | None) -> bool:
    return (
        record["final"]
        and record["kpi"] == "page_views"
        and record["window"] == "10s"
        and (start is None or record["window_start"] == start)
    )


async def _live_page_views(ns, seconds: float) -> int:
    """Page views stamped with the wall clock, 20 a second on many visitors; returns the last ts."""
    producer = AIOKafkaProducer(bootstrap_servers=ns.broker)
    await producer.start()
    last_ms = 0
    try:
        end = time.time() + seconds
        n = 0
        while time.time() < end:
            n += 1
            last_ms = int(time.time() * 1000)
            event = {
                "event_id": f"live-{n}",
                "event_type": "page_view",
                "ts": last_ms,
                "session_id": f"s{n % 13}",
                "visitor_id": f"v{n % 13}",
                "page": "/",
            }
            payload = orjson.dumps(event)
            key = key_of("clickstream", parse("clickstream", payload, now_ms=last_ms).event).encode()
            await producer.send_and_wait(ns.topics["clickstream"], payload, key=key)
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()
    return last_ms
