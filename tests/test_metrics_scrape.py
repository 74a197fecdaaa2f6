"""`/metrics` of a real worker: every metric family the KPI engine promises, named by the
Prometheus conventions (checked by `promtool check metrics`), with counters that agree
with the batch recomputation."""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import shutil
import subprocess
import time
import urllib.request
from collections import Counter

import msgspec
import oracle
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from shoppulse.streams.kpis import CATALOGUE, counters
from shoppulse.tools.generate import GeneratorConfig, generate_events

pytestmark = pytest.mark.integration

QUANTILE_GAUGES = ("shoppulse_first_response_seconds", "shoppulse_resolution_seconds")
# The worker's and the oracle's: the last sessions end, and their windows close, this long after the
# replayed traffic stops (the generator's shoppers pause 15 s between steps, at the median).
SESSION_TIMEOUT_S = 60
ID_LABEL = re.compile(r"(^|_)(id|user|visitor|session|order|ticket|customer|email)(_|$)")


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_families_names_and_counters(namespace, tmp_path):
    config = GeneratorConfig(rate=10, seed=31, late_fraction=0.01, duplicate_fraction=0.02)
    events = [
        (s, msgspec.to_builtins(e)) for s, e in generate_events(config, start_ms=1_700_000_000_000, duration_s=2400)
    ]
    path = tmp_path / "traffic.jsonl"
    path.write_bytes(b"".join(orjson.dumps({**e, "topic": s}) + b"\n" for s, e in events))
    ns = namespace(idle_timeout_seconds=3, session_timeout_seconds=SESSION_TIMEOUT_S)
    assert ns.shoppulse("replay", "jsonl", str(path), "--quiet").returncode == 0

    async def send_invalid() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=ns.broker)
        await producer.start()
        try:
            for n in range(5):
                await producer.send_and_wait(ns.topics["orders"], b"{not json" + bytes([48 + n]))
        finally:
            await producer.stop()

    asyncio.run(send_invalid())
    worker = ns.start_worker()
    kept, late_events = oracle.drop_late(events)
    expected = oracle.compute(kept, session_timeout_s=SESSION_TIMEOUT_S)
    # Counters are fed when 1 m windows close: wait until the last one with data of each family is final.
    last = {
        kpi: max(k[2] for k in expected if k[0] == kpi and k[1] == "1m")
        for kpi in ("sessions", "conversion_rate", "orders", "tickets_created")
    }

    def all_closed(records) -> bool:
        done = {
            r["kpi"]
            for r in records
            if r["final"] and r["window"] == "1m" and r["window_start"] >= last.get(r["kpi"], "~")
        }
        return done >= set(last)

    ns.read_topic(ns.topics["results"], quiet_seconds=3, timeout=240, until=all_closed)
    time.sleep(2)
    text = _scrape(worker.metrics_port)
    families = _families(text)

    def family(name: str, kind: str):
        assert name in families, f"{name} missing from /metrics; have {sorted(families)}"
        assert families[name].type == kind, f"{name} is a {families[name].type}, expected {kind}"
        return families[name]

    # Windowed KPI gauges: one per catalogue KPI except the insight lists (kpi-results only).
    for kpi in CATALOGUE:
        if kpi.insight:
            assert not any(kpi.key in name for name in families), f"insight list {kpi.key} exported"
            continue
        gauge = family(kpi.metric, "gauge")
        assert not kpi.metric.endswith("_total")
        if kpi.unit == "ratio":
            assert kpi.metric.endswith("_ratio"), kpi.metric
        if kpi.unit == "seconds":
            assert kpi.metric.endswith("_seconds"), kpi.metric
        assert all(s.labels["window"] in ("1m", "5m", "1h") for s in gauge.samples), kpi.metric

    # Precomputed quantiles the Prometheus way: a `quantile` label, the mean a gauge of its own.
    for key in ("first_response_seconds", "resolution_seconds"):
        samples = family(f"shoppulse_{key}", "gauge").samples
        assert samples and {s.labels["quantile"] for s in samples} == {"0.5", "0.9"}, key
        assert not any("stat" in s.labels for s in samples), key
        mean = family(f"shoppulse_{key.removesuffix('_seconds')}_mean_seconds", "gauge").samples
        assert mean and not any("quantile" in s.labels for s in mean), key

    # Process and platform collectors, and the build info the dashboards annotate deploys with.
    for name in ("process_resident_memory_bytes", "process_start_time_seconds", "python_info"):
        family(name, "gauge")
    family("process_cpu_seconds", "counter")
    (build,) = family("shoppulse_build_info", "gauge").samples
    assert build.value == 1 and build.labels["version"] == importlib.metadata.version("shoppulse"), build
    assert set(build.labels) == {"version", "commit"} and build.labels["commit"], build

    freshness = family("shoppulse_last_closed_window_end_timestamp_seconds", "gauge")
    assert {s.labels["family"] for s in freshness.samples} >= {"traffic", "sessions", "sales", "support"}

    # Counters for numerators and denominators; the totals agree with the oracle's 1 m windows.
    for spec in counters():
        counter = family(f"shoppulse_{spec.name}", "counter")
        if spec.label:
            assert all(set(s.labels) == {spec.label} for s in counter.samples), spec

    def total(name: str) -> float:
        return sum(s.value for s in families[f"shoppulse_{name}"].samples if s.name.endswith("_total"))

    def oracle_sum(kpi: str) -> int:
        return sum(v for k, v in expected.items() if k[0] == kpi and k[1] == "1m" and not k[3])

    assert total("orders") == oracle_sum("orders") > 0
    assert total("tickets_created") == oracle_sum("tickets_created") > 0
    assert total("sessions") == oracle_sum("sessions") > 0
    assert total("converted_sessions") > 0
    revenue = {
        s.labels["currency"]: s.value for s in families["shoppulse_revenue"].samples if s.name.endswith("_total")
    }
    expected_revenue = {}
    for (kpi, window, _start, dims), value in expected.items():
        if kpi == "revenue" and window == "1m":
            currency = dict(dims)["currency"]
            expected_revenue[currency] = expected_revenue.get(currency, 0) + value
    assert revenue.keys() == expected_revenue.keys() and revenue
    for currency, amount in expected_revenue.items():
        assert revenue[currency] == pytest.approx(amount, rel=1e-9), currency

    for name in (
        "shoppulse_first_response_duration_seconds",
        "shoppulse_resolution_duration_seconds",
        "shoppulse_processing_latency_seconds",
    ):
        histogram = family(name, "histogram")
        assert any(s.name == f"{name}_bucket" for s in histogram.samples)
        assert sum(s.value for s in histogram.samples if s.name == f"{name}_count") > 0, name

    events_in = family("shoppulse_events", "counter")
    outcomes = {s.labels["outcome"] for s in events_in.samples if s.value > 0}
    assert outcomes == {"ok", "invalid", "late", "duplicate"}, outcomes
    assert {s.labels["topic"] for s in events_in.samples} == {
        ns.topics[t] for t in ("clickstream", "orders", "tickets")
    }
    invalid = sum(s.value for s in events_in.samples if s.labels["outcome"] == "invalid" and s.name.endswith("_total"))
    assert invalid == 5
    family("shoppulse_dead_letters", "counter")
    # Late events are not dropped silently: each is a dead letter with reason `late`, and counted.
    late_total = sum(s.value for s in events_in.samples if s.labels["outcome"] == "late" and s.name.endswith("_total"))
    letters = ns.read_topic(ns.topics["dead_letters"], quiet_seconds=2, timeout=60)
    late_letters = [r for r in letters if r["reason"] == "late"]
    late_ids = Counter(orjson.loads(r["payload"])["event_id"] for r in late_letters)
    # The oracle's late events, once each: a re-sent copy of an event already seen (counted or
    # dead-lettered) is reported as a duplicate instead.
    counted = {e["event_id"] for _, e in kept}
    assert late_ids == Counter({e["event_id"] for _, e in late_events} - counted)
    assert late_total == sum(late_ids.values()) > 0
    assert all("watermark" in r["detail"] for r in late_letters)
    lag = family("shoppulse_watermark_lag_seconds", "gauge")
    assert {s.labels["topic"] for s in lag.samples} == {ns.topics[t] for t in ("clickstream", "orders", "tickets")}
    family("shoppulse_consumer_lag_messages", "gauge")
    # Everything is processed: the lag, re-read from the broker every 5 s, comes to 0 per topic.
    deadline = time.monotonic() + 20
    while True:
        lag = {
            s.labels["topic"]: s.value
            for s in _families(_scrape(worker.metrics_port))["shoppulse_consumer_lag_messages"].samples
        }
        if lag == {ns.topics[t]: 0.0 for t in ("clickstream", "orders", "tickets")} or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert lag == {ns.topics[t]: 0.0 for t in ("clickstream", "orders", "tickets")}, lag

    # No identifiers in labels, and label values stay bounded.
    for fam in families.values():
        for sample in fam.samples:
            for label in sample.labels:
                assert not ID_LABEL.search(label), f"{fam.name} has an id-like label {label!r}"
    assert len(text.splitlines()) < 5000

    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: scripts/setup.sh installs prometheus (apt-get install prometheus)"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    # One lint is waived, knowingly: promtool reserves `quantile` for summaries, and the window quantiles
    # are gauges of the last closed window (a summary's _sum and _count would have to be running totals).
    # The issue asks for the `quantile` label; docs/design.md says why it is not a summary.
    waived = {f'{m} non-summary metrics should not have "quantile" label' for m in QUANTILE_GAUGES}
    problems = [
        line for line in (check.stdout + check.stderr).splitlines() if line.strip() and line.strip() not in waived
    ]
    assert not problems, "\n".join(problems)
    assert check.returncode in (0, 3), check.stdout + check.stderr  # 3: lint findings, all of them waived above
