"""The Faust app around the batch data plane: Faust runs the worker (lifecycle, signals, the
1-second timer); the data plane (agents/dataplane.py) reads and checkpoints every input partition.

clickstream ─┐                         ┌─ SourceTask (source_task.py) → SourceDriver (streams/pipeline.py):
orders ──────┼─ agents/dataplane.py ───┤   parse, dedup, watermark, engines (streams/engines/)
tickets ─────┘   (aiokafka batches)    └─ snapshots + progress ─▶ <app>-partials (1 partition)
                                                                          │
  kpi-results ◀── MergeTask (merge_task.py) → MergeDriver (streams/pipeline.py) ◀─┘
  /metrics    ◀── PrometheusExporter (outputs/prometheus.py), a Sensor told of every committed checkpoint

Every task checkpoints its state, outputs and input offset in one Kafka transaction
(agents/task.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faust
from faust.app import BootStrategy

from ..outputs.prometheus import Metrics, PrometheusExporter
from ..settings import Settings
from ..streams.events import STREAMS
from .clock import ClockReader
from .dataplane import BatchDataPlane


class NoKafka(BootStrategy):
    """Faust starts no Kafka client of its own: no consumer and so no consumer group, no
    producer, no topics, no table manager, no web server; its `broker` setting is never read.
    With a consumer, Faust would start the timer, the task and the data plane only once its
    own group had an assignment (`App.on_started` waits for the table recovery that follows
    it): docs/design.md, "Data plane"."""

    enable_kafka = False
    enable_web = False


@dataclass
class Worker:
    app: faust.App
    plane: BatchDataPlane
    metrics: Metrics


def create_app(settings: Settings, metrics: Metrics | None = None) -> Worker:
    """The app runs the worker: the data plane (a service), the clock reader (a task) and the
    1-second timer start as soon as the app has; the data plane does all of the Kafka work."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    metrics = metrics or Metrics()
    metrics.start_at_zero(settings.topics.source(stream) for stream in STREAMS)
    app = faust.App(settings.app_id, datadir=settings.data_dir, web_enabled=False)
    app.boot_strategy = NoKafka(app)
    smallest_ms = min(settings.windows_seconds) * 1000
    clock = ClockReader(settings)  # the stream clocks, for idle partitions (streams/clock.py)
    app.task(clock.task())
    plane = BatchDataPlane(settings, PrometheusExporter(metrics, smallest_ms), clock)
    app.service(plane)  # type: ignore[arg-type]  # an instance: Faust starts it as it is

    @app.timer(settings.update_interval_seconds)
    async def every_second() -> None:
        await plane.tick()

    return Worker(app, plane, metrics)
