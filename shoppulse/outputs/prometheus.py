"""The Prometheus exporter: KPI gauges, counters and pipeline health in one registry, and the
`/metrics` HTTP server. A `Sensor` (outputs/base.py): every counter and histogram moves when
the checkpoint that holds its events commits."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterable
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import get_args

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from ..errors import ShoppulseError
from ..settings import window_label
from ..streams.events import NO_CHANNEL, REASONS, Priority, TicketChannel
from ..streams.kpis import BY_KEY, CATALOGUE, counters
from ..streams.merge import WindowResult
from ..streams.pipeline import OUTCOMES
from .base import Sensor, SourceTally

disable_created_metrics()  # `_created` series double the scrape size and no dashboard uses them

RESTORE_KINDS = ("tail", "full")
DURATION_BUCKETS = (60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 86400, 2 * 86400, 7 * 86400)


class PortInUse(ShoppulseError):
    """Expected failure: the metrics port is taken."""


@cache
def build_info() -> tuple[str, str]:
    """(version, commit) of this shoppulse: the package version, and the commit from
    SHOPPULSE_COMMIT (the Docker build sets it) or the git checkout it runs from, else "unknown"."""
    try:
        version = metadata.version("shoppulse")
    except metadata.PackageNotFoundError:
        version = "unknown"
    commit = os.environ.get("SHOPPULSE_COMMIT", "")
    if not commit:
        try:
            found = subprocess.run(
                ["git", "rev-parse", "--short=12", "HEAD"],
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            )
            commit = found.stdout.strip() if found.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            commit = ""
    return version, commit or "unknown"


class Metrics:
    """Every Prometheus family shoppulse exports, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # The standard process_* (memory, CPU, open fds, start time), python_info and python_gc_* families.
        # The default registry has them already; a registry of our own registers its own.
        if r is not REGISTRY:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self.build_info = Gauge(
            "shoppulse_build_info",
            "Always 1: the version and commit this worker runs",
            ["version", "commit"],
            registry=r,
        )
        self.build_info.labels(*build_info()).set(1)
        self.events = Counter(
            "shoppulse_events",
            "Source events read, by topic and outcome (ok, invalid, late, duplicate)",
            ["topic", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "shoppulse_dead_letters", "Records sent to the dead-letter topic, by reason", ["reason"], registry=r
        )
        self.watermark_records = Counter(
            "shoppulse_watermark_records",
            "Watermark records read (a replay's end, a producer's heartbeat): not events, never in shoppulse_events_total",
            ["topic"],
            registry=r,
        )
        self.filter_false_positives = Counter(
            "shoppulse_dedup_filter_false_positives",
            "New event ids a dedup Bloom filter took for maybe seen: one store read each, never a wrong answer",
            ["topic"],
            registry=r,
        )
        self.watermark_lag = Gauge(
            "shoppulse_watermark_lag_seconds",
            "Wall clock minus the event-time watermark (worst partition of this worker)",
            ["topic"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "shoppulse_consumer_lag_messages", "Messages behind the log end, per topic", ["topic"], registry=r
        )
        self.latency = Histogram(
            "shoppulse_processing_latency_seconds",
            "Kafka record timestamp to processed",
            ["topic"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.first_response = Histogram(
            "shoppulse_first_response_duration_seconds",
            "Ticket created to first public agent reply",
            ["channel", "priority"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.resolution = Histogram(
            "shoppulse_resolution_duration_seconds", "Ticket created to solved", buckets=DURATION_BUCKETS, registry=r
        )
        # Restores of a task's changelog partition: `tail` (a local copy and the changelog's tail) or `full`.
        self.restores = Counter("shoppulse_restores", "Task restores, by kind (tail or full)", ["kind"], registry=r)
        self.restored_records = Counter(
            "shoppulse_restored_changelog_records", "Changelog records read by restores, by kind", ["kind"], registry=r
        )
        self.window_end = Gauge(
            "shoppulse_last_closed_window_end_timestamp_seconds",
            "End of the most recent closed window (data freshness)",
            ["family", "window"],
            registry=r,
        )
        self.gauges: dict[str, Gauge] = {}
        for kpi in CATALOGUE:
            if not kpi.insight:
                self.gauges[kpi.key] = Gauge(
                    kpi.metric, f"{kpi.formula} (last closed window)", ["window", *kpi.dims], registry=r
                )
        self.counters = [
            (
                spec,
                Counter(
                    f"shoppulse_{spec.name}",
                    f"Running total of the measure `{spec.measure}`"
                    f"{' by ' + spec.label if spec.label else ''}, counted when its 1 m window closes",
                    [spec.label] if spec.label else [],
                    registry=r,
                ),
            )
            for spec in counters()
        ]

    def start_at_zero(self, source_topics: Iterable[str]) -> None:
        """Create every pipeline series whose labels are known up front, at zero. A series that
        appears with its first count shows no increase to `rate()` or `increase()`, so the first
        burst of dead letters, or a backlog worked off between two scrapes, would never show on a
        panel or fire an alert (prometheus.io, "avoid missing metrics")."""
        for topic in source_topics:
            for outcome in OUTCOMES:
                self.events.labels(topic, outcome)
            self.filter_false_positives.labels(topic)
            self.watermark_records.labels(topic)
            self.latency.labels(topic)
        for reason in REASONS:
            self.dead_letters.labels(reason)
        for kind in RESTORE_KINDS:
            self.restores.labels(kind)
            self.restored_records.labels(kind)
        for channel in (*get_args(TicketChannel), NO_CHANNEL):
            for priority in get_args(Priority):
                self.first_response.labels(channel, priority)

    def serve(self, host: str, port: int) -> None:
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"Port {port} on {host} is taken; choose another with --metrics-port N.") from None
            raise


class PrometheusExporter(Sensor):
    """Pipeline counters and histograms; windowed KPI gauges (last closed window), freshness and
    numerator/denominator counters; lag gauges."""

    def __init__(self, metrics: Metrics, smallest_window_ms: int):
        self.metrics = metrics
        self.smallest = smallest_window_ms
        self._series: dict[tuple[str, str], set[tuple[str, ...]]] = {}

    def on_source_committed(self, topic: str, tally: SourceTally) -> None:
        m = self.metrics
        for outcome, n in tally.outcomes.items():
            if n:
                m.events.labels(topic, outcome).inc(n)
        for reason, n in tally.dead_letter_reasons.items():
            m.dead_letters.labels(reason).inc(n)
        for seconds, channel, priority in tally.first_responses:
            m.first_response.labels(channel, priority).observe(seconds)
        for seconds in tally.resolutions:
            m.resolution.observe(seconds)
        if tally.watermarks:
            m.watermark_records.labels(topic).inc(tally.watermarks)
        if tally.filter_false_positives:
            m.filter_false_positives.labels(topic).inc(tally.filter_false_positives)
        latency = m.latency.labels(topic)
        for seconds in tally.latencies:
            latency.observe(seconds)

    def on_lag(self, topic: str, watermark_lag_seconds: float | None, consumer_lag: int) -> None:
        if watermark_lag_seconds is not None:
            self.metrics.watermark_lag.labels(topic).set(watermark_lag_seconds)
        self.metrics.consumer_lag.labels(topic).set(consumer_lag)

    def on_restored(self, full: bool, records: int) -> None:
        kind = "full" if full else "tail"
        self.metrics.restores.labels(kind).inc()
        self.metrics.restored_records.labels(kind).inc(records)

    def on_results_committed(self, results: list[WindowResult]) -> None:
        m = self.metrics
        for result in results:
            if not result.final:
                continue
            window = window_label(result.size_ms // 1000)
            if result.family != "cross":
                m.window_end.labels(result.family, window).set(result.end_ms / 1000)
            # Every gauge of this family is refreshed, so a KPI with no values in this window
            # (no orders, so no currency) loses its old series instead of showing them as current.
            fresh: dict[str, set[tuple[str, ...]]] = {key: set() for key in result.kpis() if not BY_KEY[key].insight}
            for value in result.values:
                kpi = BY_KEY[value.kpi]
                if kpi.insight:
                    continue
                labels = (window, *(value.dimensions.get(d, "") for d in kpi.dims))
                fresh.setdefault(value.kpi, set()).add(labels)
                gauge = m.gauges[value.kpi]
                if value.value is None:
                    gauge.labels(*labels).set(float("nan"))  # no denominator in this window
                else:
                    gauge.labels(*labels).set(value.value)
            for kpi_key, labelsets in fresh.items():
                # Label values absent from this window (a currency with no orders now) are dropped,
                # so a dashboard never shows an old window's value as current.
                for stale in self._series.get((kpi_key, window), set()) - labelsets:
                    m.gauges[kpi_key].remove(*stale)
                self._series[(kpi_key, window)] = labelsets
            if result.size_ms == self.smallest and result.measures is not None:
                for spec, counter in m.counters:
                    amount = result.measures.get(spec.measure)
                    if not amount:
                        continue
                    # Counter measures are never negative (events.py rejects amounts that would
                    # make them so); the check keeps a counter from ever raising.
                    if spec.label:
                        for label, by_label in amount.items():
                            if by_label > 0:
                                counter.labels(label).inc(by_label / spec.scale)
                    elif amount > 0:
                        counter.inc(amount / spec.scale)

    def on_merge_revoked(self) -> None:
        """Another worker merges now: drop the KPI gauges and freshness, which it exports from
        here on (two workers would otherwise show different "last" windows). Counters stay:
        PromQL sums their rates across workers."""
        for gauge in self.metrics.gauges.values():
            gauge.clear()
        self.metrics.window_end.clear()
        self._series.clear()
