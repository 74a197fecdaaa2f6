"""The Prometheus exporter fed by the merge stage: gauges hold the last closed window and never
keep an older window's value as current."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shoppulse.outputs.prometheus import Metrics, PrometheusExporter
from shoppulse.settings import Settings
from shoppulse.streams.events import REASONS
from shoppulse.streams.measures import MICROS, Measures
from shoppulse.streams.merge import Merger
from shoppulse.streams.partials import Progress, Snapshot

MINUTE = 60_000
T0 = 1_700_000_040_000 - 1_700_000_040_000 % (3600 * 1000)  # an hour boundary


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple, float]:
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    family = families.get(name)
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples} if family else {}


def _run(minutes: list[tuple[int, int]]):
    """Two partitions; minute i has `visitors` distinct visitors and `revenue` EUR of one order
    (none when 0). Returns the registry after the merger has finalised every minute."""
    settings = Settings(partitions=2, windows_seconds=(60,))
    merger = Merger(settings)
    registry = CollectorRegistry()
    exporter = PrometheusExporter(Metrics(registry), MINUTE)
    per_minute = []
    for i, (visitors, revenue) in enumerate(minutes):
        start = T0 + i * MINUTE
        traffic, sales = Measures(), Measures()
        for v in range(visitors):
            traffic.distinct("visitors").add(f"visitor{v}")
        if revenue:
            sales.inc("orders")
            sales.inc_label("revenue_micros", "EUR", revenue * MICROS)
            sales.inc_label("orders_by_currency", "EUR")
        results = []
        for family, measures in (("traffic", traffic), ("sales", sales)):
            merger.apply(Snapshot(family, MINUTE, start, 0, measures))
            for partition in (0, 1):
                results += merger.apply(Progress(family, partition, start + MINUTE))
        exporter.on_results_committed(results)
        per_minute.append(_samples(registry, "shoppulse_revenue_per_visitor"))
    return registry, exporter, per_minute


def test_revenue_per_visitor_series_go_when_a_window_has_no_orders():
    registry, _, per_minute = _run([(4, 100), (5, 0)])
    assert per_minute[0] == {(("currency", "EUR"), ("window", "1m")): 25.0}
    assert per_minute[1] == {}, "an outage minute must not keep the last good value"
    per_window = _samples(registry, "shoppulse_revenue_per_window")
    assert per_window == {}
    counter = _samples(registry, "shoppulse_revenue")
    assert counter[(("currency", "EUR"),)] == 100.0  # the counter keeps the running total


def test_gauges_are_dropped_when_the_merge_moves_to_another_worker():
    registry, exporter, _ = _run([(4, 100)])
    assert _samples(registry, "shoppulse_revenue_per_visitor")
    assert _samples(registry, "shoppulse_last_closed_window_end_timestamp_seconds")
    exporter.on_merge_revoked()
    assert _samples(registry, "shoppulse_revenue_per_visitor") == {}
    assert _samples(registry, "shoppulse_orders_per_window") == {}
    assert _samples(registry, "shoppulse_last_closed_window_end_timestamp_seconds") == {}
    assert _samples(registry, "shoppulse_orders")[()] == 1.0  # counters stay


def test_a_later_cross_result_keeps_the_other_cross_kpis():
    """Support becoming final after sales and traffic computes only hit_rate: revenue per visitor,
    set when sales and traffic were both final, stays."""
    settings = Settings(partitions=1, windows_seconds=(60,))
    merger = Merger(settings)
    registry = CollectorRegistry()
    exporter = PrometheusExporter(Metrics(registry), MINUTE)
    traffic, sales = Measures(), Measures()
    traffic.distinct("visitors").add("visitor1")
    sales.inc_label("revenue_micros", "EUR", 10 * MICROS)
    for family, measures in (("traffic", traffic), ("sales", sales), ("support", Measures())):
        merger.apply(Snapshot(family, MINUTE, T0, 0, measures))
        exporter.on_results_committed(merger.apply(Progress(family, 0, T0 + MINUTE)))
    assert _samples(registry, "shoppulse_revenue_per_visitor") == {(("currency", "EUR"), ("window", "1m")): 10.0}


def test_pipeline_series_with_known_labels_start_at_zero():
    """So that rate() sees their first increase: every outcome per topic, every dead-letter
    reason, every ticket channel and priority; nothing that says a partition is held."""
    registry = CollectorRegistry()
    Metrics(registry).start_at_zero(["c", "o", "t"])
    events = _samples(registry, "shoppulse_events")
    assert {labels: v for labels, v in events.items() if v == 0} == events
    assert {dict(k)["topic"] for k in events} == {"c", "o", "t"}
    assert {dict(k)["outcome"] for k in events} == {"ok", "invalid", "late", "duplicate"}
    reasons = {dict(k)["reason"] for k in _samples(registry, "shoppulse_dead_letters")}
    assert reasons == set(REASONS)
    replies = _samples(registry, "shoppulse_first_response_duration_seconds")
    channels = {(dict(k)["channel"], dict(k)["priority"]) for k in replies}
    assert ("social", "urgent") in channels and ("unknown", "normal") in channels and len(channels) == 6 * 4
    assert not any(replies.values())
    assert not _samples(registry, "shoppulse_watermark_lag_seconds")
    assert not _samples(registry, "shoppulse_consumer_lag_messages")
