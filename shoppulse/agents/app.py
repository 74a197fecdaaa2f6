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

from ..kafka.options import faust_broker, faust_credentials
from ..outputs.prometheus import Metrics, PrometheusExporter
from ..settings import Settings
from ..streams.events import STREAMS
from .clock import ClockReader
from .dataplane import BatchDataPlane, group_instance_id


@dataclass
class Worker:
    app: faust.App
    plane: BatchDataPlane
    metrics: Metrics


def create_app(settings: Settings, metrics: Metrics | None = None) -> Worker:
    """The Faust app gets an id of its own: Faust always joins a consumer group of its app id,
    with its own assignor, and the data plane's group is the app id. Faust starts the data
    plane only once its own group has an assignment, so its consumer is a static member too:
    a restarted worker would otherwise wait for its dead Faust member's session to expire."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    metrics = metrics or Metrics()
    metrics.start_at_zero(settings.topics.source(stream) for stream in STREAMS)
    session = settings.group_session_timeout_seconds
    app = faust.App(
        f"{settings.app_id}-app",
        broker=faust_broker(settings.broker),
        broker_credentials=faust_credentials(settings),
        datadir=settings.data_dir,
        web_enabled=False,
        topic_replication_factor=settings.replication_factor,
        consumer_group_instance_id=group_instance_id(settings),
        broker_session_timeout=session,
        broker_heartbeat_interval=min(3.0, session / 3),
    )
    smallest_ms = min(settings.windows_seconds) * 1000
    clock = ClockReader(settings)  # the stream clocks, for idle partitions (streams/clock.py)
    app.task(clock.task())
    plane = BatchDataPlane(settings, PrometheusExporter(metrics, smallest_ms), clock)
    app.service(plane)  # type: ignore[arg-type]  # an instance: Faust starts it as it is

    @app.timer(settings.update_interval_seconds)
    async def every_second() -> None:
        await plane.tick()

    return Worker(app, plane, metrics)
