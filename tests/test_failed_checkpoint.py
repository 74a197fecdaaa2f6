"""Checkpoints that fail count nothing: a worker whose producers are fenced at random moments of
a live replay reopens its tasks from the last committed checkpoint and feeds the same records
again. Afterwards every Prometheus counter and histogram count equals the batch recomputation
(tests/oracle.py), and every kpi-results final is exact and seen once by a read_committed
reader. A metric that moved before its checkpoint committed would count the replayed records
twice."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import oracle
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from test_bad_input import _scrape, _wait_for_metrics
from test_dataplane import (
    QUICK,
    _assert_exactly_once,
    _generated,
    _live_replay,
    _start_worker,
    _wait_for_events,
    _write_jsonl,
)
from test_kpis_kafka import QUICK_CLOSE

from shoppulse.settings import Settings
from shoppulse.streams.events import STREAMS
from shoppulse.streams.kpis import BY_KEY, counters

pytestmark = pytest.mark.integration

FENCES = 4


async def _fence(broker: str, transactional_ids: list[str]) -> None:
    """What a partition's next owner does first: InitProducerId bumps the producer epoch, so the
    worker's next send, offset commit or transaction commit raises ProducerFenced, and the
    transaction it had open is aborted."""
    for tid in transactional_ids:
        producer = AIOKafkaProducer(bootstrap_servers=broker, transactional_id=tid)
        await producer.start()
        await producer.stop()


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _metric(samples: dict, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= have)


def test_fenced_checkpoints_mid_replay_count_every_metric_once(namespace, tmp_path):
    events = _generated(19, 2400, rate=10, duplicate_fraction=0.02)
    path = tmp_path / "generated.jsonl"
    _write_jsonl(path, events)
    # Checkpoints every 0.5 s, so a fence finds uncommitted work in most tasks.
    ns = namespace(idle_timeout_seconds=5, checkpoint_interval_seconds=0.5, **QUICK)
    worker = _start_worker(ns, "w0", "w0")
    _wait_for_metrics(worker.metrics_port, ns)
    partitions = Settings().partitions
    transactional_ids = [f"{ns.app_id}-{s}-{p}" for s in STREAMS for p in range(partitions)] + [f"{ns.app_id}-merge-0"]
    replay = _live_replay(ns, path, speed=60)  # about 40 s
    _wait_for_events(ns, worker, 1)
    rng = random.Random(19)
    for fence in range(FENCES):
        time.sleep(rng.uniform(3, 6))
        assert replay.poll() is None, f"the replay ended before fence {fence + 1}"
        asyncio.run(_fence(ns.broker, transactional_ids))
    assert replay.wait(300) == 0, replay.stderr.read() if replay.stderr else ""
    expected = _assert_exactly_once(ns, events, ["w0"])
    assert worker.poll() is None, ns.worker_log()
    fenced = (ns.tmp_path / "w0.log").read_text(errors="replace").count("fenced by a newer owner")
    assert fenced, "no checkpoint was fenced: the test proves nothing\n" + ns.worker_log()

    kept, _late = oracle.drop_late(events, grace_s=float(QUICK_CLOSE["grace_seconds"]), smallest_window_s=30)
    tallies = oracle.Tallies()
    oracle.compute(kept, windows_s=(30, 120), session_timeout_s=30, tallies=tallies)
    # The counters move with the merge stage's last checkpoint, just after its finals commit.
    time.sleep(2)
    samples = _samples(_scrape(worker.metrics_port))

    # Events, by topic and outcome, and the latency histogram: one observation per record read.
    for stream in STREAMS:
        topic = ns.topics[stream]
        sent = [e["event_id"] for s, e in events if s == stream]
        ok, duplicates = len(set(sent)), len(sent) - len(set(sent))
        counted = {o: _metric(samples, "shoppulse_events_total", topic=topic, outcome=o) for o in ("ok", "duplicate")}
        assert counted == {"ok": ok, "duplicate": duplicates}, topic
        marks = _metric(samples, "shoppulse_watermark_records_total", topic=topic)
        assert marks == 4, f"{topic}: {marks:.0f} watermark records counted: the replay ends with one per partition"
        latency = _metric(samples, "shoppulse_processing_latency_seconds_count", topic=topic)
        records = len(sent) + marks
        assert latency == records, f"{topic}: {latency:.0f} latency observations for {records:.0f} records"
    assert _metric(samples, "shoppulse_dead_letters_total") == 0

    # The KPI counters, against the oracle's smallest windows.
    smallest = "30s"
    for spec in counters():
        if spec.name not in BY_KEY or spec.name not in {key[0] for key in expected}:
            continue
        want: Counter = Counter()
        for (kpi, window, _start, dims), value in expected.items():
            if kpi == spec.name and window == smallest:
                want[dict(dims).get(spec.label, "") if spec.label else ""] += float(value)
        got = {
            dict(labels).get(spec.label, "") if spec.label else "": value
            for (name, labels), value in samples.items()
            if name == f"shoppulse_{spec.name}_total"
        }
        for label in set(want) | set(got):
            assert got.get(label, 0.0) == pytest.approx(want[label], rel=1e-9), f"shoppulse_{spec.name}_total {label}"
    assert _metric(samples, "shoppulse_orders_total") > 0 and _metric(samples, "shoppulse_tickets_created_total") > 0

    # The histograms of the ticket engine: one observation per first reply and per solve.
    first = "shoppulse_first_response_duration_seconds_count"
    got_first = Counter(
        {
            (dict(labels)["channel"], dict(labels)["priority"]): value
            for (name, labels), value in samples.items()
            if name == first and value
        }
    )
    assert got_first == tallies.first_replies and tallies.first_replies, (got_first, tallies.first_replies)
    resolutions = _metric(samples, "shoppulse_resolution_duration_seconds_count")
    assert resolutions == tallies.resolutions > 0
