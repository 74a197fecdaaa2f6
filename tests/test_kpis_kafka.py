"""KPI engine vs the batch recomputation (tests/oracle.py), through the real broker and worker.

Each test replays events into real Kafka topics (4 partitions), runs `shoppulse worker`,
collects every `final` record from `kpi-results` and compares them with the oracle over
the same events: counts and ratios exactly, sketched quantiles within 1 %.
"""

from __future__ import annotations

import itertools
import signal
import time
import urllib.request
from collections import defaultdict
from datetime import datetime

import msgspec
import oracle
import orjson
import pytest
from conftest import DATASETS

from shoppulse.tools.generate import GeneratorConfig, generate_events
from shoppulse.tools.replay import read_events

pytestmark = pytest.mark.integration

# Short windows, grace and session timeout: the replays end with watermark records, and a
# stream without them (a split replay, an idle partition) closes its last windows one window +
# grace after its clock goes quiet (docs/kpis.md, "Windows and time").
QUICK_CLOSE = {"grace_seconds": 5, "session_timeout_seconds": 30, "windows_seconds": "30,120"}
ORACLE_SETTINGS = {"windows_s": (30, 120), "session_timeout_s": 30}

SAMPLES = {
    "rees46": "rees46-2019-oct-head.csv",
    "online-retail": "uci-online-retail-2010-dec-head.csv",
    "incident-log": "uci-incident-event-log-head.csv",
}


def _finals_matching(ns, expected) -> list[dict]:
    """Read kpi-results until every expected key has a final record (or the timeout)."""
    wanted = oracle.required_keys(expected)

    def complete(records: list[dict]) -> bool:
        return wanted <= {oracle.key_of(r) for r in records if r["final"]}

    records = ns.read_topic(ns.topics["results"], quiet_seconds=8, timeout=300, until=complete)
    problems = _update_contract_problems(records)
    assert not problems, "\n".join(problems[:20])
    return [r for r in records if r["final"]]


def _update_contract_problems(records: list[dict]) -> list[str]:
    """Non-final updates of a record (kpi, window, start, dimensions) come at most once a second,
    and none after its final record."""
    by_key: dict = defaultdict(list)
    for record in records:  # in topic order: one key per (kpi, window) keeps a record's order
        by_key[oracle.key_of(record)].append(record)
    problems = []
    for key, history in by_key.items():
        opens = [datetime.fromisoformat(r["emitted_at"]) for r in history if not r["final"]]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(opens)]
        if gaps and min(gaps) < 0.99:  # emitted_at is truncated to milliseconds
            problems.append(f"{key}: non-final updates {min(gaps):.3f} s apart")
        finals = [i for i, r in enumerate(history) if r["final"]]
        if finals and any(not r["final"] for r in history[finals[0] :]):
            problems.append(f"{key}: a non-final record after the final one")
    return problems


def _assert_matches(ns, events, workers=()) -> dict:
    kept, _late = oracle.drop_late(events, grace_s=QUICK_CLOSE["grace_seconds"], smallest_window_s=30)
    expected = oracle.compute(kept, **ORACLE_SETTINGS)
    finals = _finals_matching(ns, expected)
    problems = oracle.compare(expected, finals)
    if problems:
        outcomes = {
            w.metrics_port: {o: _events_total(w, o) for o in ("ok", "duplicate", "late", "invalid")} for w in workers
        }
        pytest.fail(
            "\n".join(problems[:30]) + f"\n{len(problems)} problems; {oracle.summarize(expected)}\n"
            f"{len(events)} events sent; events by worker and outcome: {outcomes}\n" + ns.worker_log()
        )
    return expected


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_real_sample_through_kafka_matches_batch_recomputation(namespace, fmt):
    ns = namespace(idle_timeout_seconds=5, **QUICK_CLOSE)
    path = DATASETS / SAMPLES[fmt]
    # Replay first, then the worker (a worker that runs first: tests/test_event_time_kafka.py).
    result = ns.shoppulse("replay", fmt, str(path), "--quiet")
    assert result.returncode == 0, result.stderr
    ns.start_worker()
    events = [(stream, msgspec.to_builtins(event)) for stream, event in read_events(fmt, path)]
    expected = _assert_matches(ns, events)
    kpis = {key[0] for key in expected}
    if fmt == "rees46":
        required = {
            "sessions",
            "conversion_rate",
            "cart_abandonment_rate",
            "bounce_rate",
            "orders",
            "revenue",
            "average_order_value",
        }
        assert required <= kpis
        for kpi in ("sessions", "conversion_rate", "cart_abandonment_rate", "bounce_rate"):
            starts = {k[2] for k in expected if k[0] == kpi and k[1] == "2m"}
            # 00:00 to 02:50 UTC: 86 two-minute windows, 3 of them without any event in the sample
            assert len(starts) == 83, f"{kpi}: {len(starts)} two-minute windows"
    if fmt == "incident-log":
        assert {
            "open_tickets",
            "backlog_tickets",
            "oldest_unanswered_ticket_age_seconds",
            "first_response_seconds",
        } <= kpis


def test_generated_traffic_through_kafka_matches_batch_recomputation(namespace, tmp_path):
    """Seeded traffic covering every KPI, with late events, duplicates and sessions that
    cross window boundaries, on 4 partitions."""
    config = GeneratorConfig(rate=8, seed=23, late_fraction=0.01, duplicate_fraction=0.02)
    pairs = list(generate_events(config, start_ms=1_700_000_000_000, duration_s=5400))
    events = [(stream, msgspec.to_builtins(event)) for stream, event in pairs]
    path = tmp_path / "generated.jsonl"
    with path.open("wb") as f:
        for stream, event in events:
            f.write(orjson.dumps({**event, "topic": stream}) + b"\n")
    ns = namespace(idle_timeout_seconds=5, **QUICK_CLOSE)
    result = ns.shoppulse("replay", "jsonl", str(path), "--quiet")
    assert result.returncode == 0, result.stderr
    ns.start_worker()
    expected = _assert_matches(ns, events)

    from shoppulse.streams.kpis import CATALOGUE

    missing = {k.key for k in CATALOGUE} - {key[0] for key in expected}
    assert not missing, f"generated traffic does not exercise {missing}"
    assert oracle.drop_late(events)[1], "no late events generated"
    assert len({e["event_id"] for _, e in events}) < len(events), "no duplicates generated"
    crossing = _sessions_crossing_windows(events)
    assert crossing, "no session crosses a 1 m window boundary"


def _sessions_crossing_windows(events) -> int:
    first: dict[str, int] = {}
    crossing = set()
    for stream, event in events:
        if stream != "clickstream":
            continue
        key = f"{event['visitor_id']} {event['session_id']}"
        ts = oracle.ts_ms(event["ts"])
        start = first.setdefault(key, ts)
        if ts // 60_000 != start // 60_000:
            crossing.add(key)
    return len(crossing)


def test_two_workers_share_the_partitions_and_stay_exact(namespace, tmp_path):
    """Two workers in a settled group split every topic's partitions; the merged results are exact.

    The traffic is replayed once both workers hold partitions; workers that join and leave
    *during* a replay are tests/test_dataplane.py's."""
    config = GeneratorConfig(rate=6, seed=41, duplicate_fraction=0.02)
    events = [
        (s, msgspec.to_builtins(e)) for s, e in generate_events(config, start_ms=1_700_000_000_000, duration_s=3600)
    ]
    path = tmp_path / "generated.jsonl"
    path.write_bytes(b"".join(orjson.dumps({**e, "topic": s}) + b"\n" for s, e in events))
    ns = namespace(idle_timeout_seconds=2, **QUICK_CLOSE)
    workers = [ns.start_worker("w0"), ns.start_worker("w1")]
    sources = [ns.topics[name] for name in ("clickstream", "orders", "tickets")]
    deadline = time.monotonic() + 60
    while not all(_holds_partitions_of(w, sources) for w in workers):
        assert time.monotonic() < deadline, "the two workers did not both get partitions within 60 s"
        time.sleep(0.5)
    assert ns.shoppulse("replay", "jsonl", str(path), "--quiet").returncode == 0
    _assert_matches(ns, events, workers)
    for name, worker in zip(("w0", "w1"), workers):
        assert "Traceback" not in ns.worker_log(name), ns.worker_log(name)
        assert _events_total(worker) > 0, f"{name} processed no events: the partitions were not shared"
        # The traffic has no late events: any here were made late by a rebalance pause.
        assert _events_total(worker, "late") == 0, f"{name} dead-lettered events as late"


def test_worker_stalled_mid_backlog_for_longer_than_the_idle_timeout_loses_nothing(namespace, tmp_path):
    """A worker that stops (GC, CPU starvation, a slow broker) while records wait unread must not
    take the pause for an idle source: its watermark would jump to the wall clock and the rest of
    the backlog would be dead-lettered as late."""
    config = GeneratorConfig(rate=8, seed=7)
    events = [
        (s, msgspec.to_builtins(e)) for s, e in generate_events(config, start_ms=1_700_000_000_000, duration_s=3600)
    ]
    path = tmp_path / "generated.jsonl"
    path.write_bytes(b"".join(orjson.dumps({**e, "topic": s}) + b"\n" for s, e in events))
    # Small checkpoints: `shoppulse_events_total` counts committed events, and with the default
    # checkpoints a fast worker commits nearly all of this backlog in its first one.
    ns = namespace(idle_timeout_seconds=3, checkpoint_max_events=250, **QUICK_CLOSE)
    assert ns.shoppulse("replay", "jsonl", str(path), "--quiet").returncode == 0
    worker = ns.start_worker()
    deadline = time.monotonic() + 120
    while (stalled_at := _events_total(worker)) < len(events) // 10:
        assert time.monotonic() < deadline and worker.poll() is None, ns.worker_log()
        time.sleep(0.1)
    worker.send_signal(signal.SIGSTOP)
    time.sleep(8)  # well past the 3 s idle timeout
    worker.send_signal(signal.SIGCONT)
    # The count read just before the stop: once resumed, a worker on a busy machine works off much of
    # the backlog before its metrics thread answers a scrape.
    assert stalled_at < len(events) * 0.9, f"the backlog was nearly done before the stall ({stalled_at:.0f} events)"
    _assert_matches(ns, events, [worker])
    assert _events_total(worker, "late") == 0, "events dead-lettered as late after the stall"


def _holds_partitions_of(worker, topics: list[str]) -> bool:
    """A worker reports a watermark lag for a topic once it holds, and has recovered, partitions of it."""
    try:
        scrape = _scrape(worker)
    except OSError:  # not listening yet
        return False
    return all(f'shoppulse_watermark_lag_seconds{{topic="{topic}"}}' in scrape for topic in topics)


def _scrape(worker) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=10) as response:
        return response.read().decode()


def _events_total(worker, outcome: str = "ok") -> float:
    try:
        scrape = _scrape(worker)
    except OSError:  # not listening yet
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in scrape.splitlines()
        if line.startswith("shoppulse_events_total{") and f'outcome="{outcome}"' in line
    )
