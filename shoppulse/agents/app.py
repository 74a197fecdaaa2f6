"""The Faust app: one source agent per source topic, one merge agent, a 1-second timer.

clickstream ─┐                       ┌─ SourceDriver (streams/pipeline.py)
orders ──────┼─ agents/source.py ────┤   parse, dedup, watermark, engines (streams/engines/)
tickets ─────┘                       └─ snapshots + progress ─▶ <app>-partials (1 partition)
                                                                        │
        kpi-results ◀── agents/merge.py: MergeDriver (streams/pipeline.py) ┘
        /metrics    ◀── PrometheusExporter (outputs/prometheus.py)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.types import TP

from ..kafka.options import compression, faust_broker, faust_credentials
from ..outputs.base import ResultListener
from ..outputs.prometheus import Metrics, PrometheusExporter
from ..settings import Settings
from ..streams.events import STREAMS
from ..topics import partials_topic
from .clock import ClockPublisher, ClockReader
from .dataplane import BatchDataPlane, group_instance_id
from .lag import consumer_lag_task
from .merge import ResultsPipeline, wire_merge
from .source import SourcePipeline, wire_source


@dataclass
class Worker:
    app: faust.App
    sources: list[SourcePipeline]
    results: ResultsPipeline | None
    metrics: Metrics
    plane: BatchDataPlane | None = None  # with data_plane = "batch"


def create_app(
    settings: Settings, listeners: list[ResultListener] | None = None, metrics: Metrics | None = None
) -> Worker:
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if settings.data_plane == "batch":
        return create_batch_app(settings, listeners or [], metrics or Metrics())
    app = faust.App(
        settings.app_id,
        broker=faust_broker(settings.broker),
        broker_credentials=faust_credentials(settings),
        store="rocksdb://",
        datadir=str(data_dir),
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=20,
        producer_compression_type=compression(settings),
        stream_buffer_maxsize=max(4096, settings.batch_max_events * 2),
        broker_commit_every=settings.batch_max_events,
    )
    # Faust pauses the stream whenever more than 100 table writes are buffered; one batch
    # writes up to one changelog record per touched key, so allow a batch's worth.
    app.producer.buffer.max_messages = max(1000, settings.batch_max_events * 4)
    metrics = metrics or Metrics()
    smallest_ms = min(settings.windows_seconds) * 1000
    partials = app.topic(partials_topic(settings), key_serializer="raw", value_serializer="raw", partitions=1)
    clock = ClockReader(settings)  # the stream clocks, for idle partitions (streams/clock.py)
    app.task(clock.task())
    sources = [wire_source(stream, app, settings, metrics, partials, clock) for stream in STREAMS]
    exporters = [PrometheusExporter(metrics, smallest_ms), *(listeners or [])]
    merge = wire_merge(app, settings, partials, exporters, ClockPublisher(app, settings))

    @app.timer(settings.update_interval_seconds)
    async def every_second() -> None:
        for source in sources:
            await source.tick()

    app.task(consumer_lag_task(app, settings, sources))

    # faust's signal type asks for `(sender, *args, signal, **kwargs)`; it calls `(app, revoked, signal=...)`.
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: set[TP], **kwargs: Any) -> None:
        for source in sources:
            source.forget({tp.partition for tp in revoked if tp.topic == source.topic_name})
        if any(tp.topic == partials.get_topic_name() for tp in revoked):
            merge.forget()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app: faust.App, assigned: set[TP], **kwargs: Any) -> None:
        # aiokafka rebalances eagerly: `revoked` is the whole old assignment, so whether the
        # merge moved away is only known from the new one.
        if not any(tp.topic == partials.get_topic_name() for tp in assigned):
            merge.moved_away()

    return Worker(app, sources, merge, metrics)


def create_batch_app(settings: Settings, listeners: list[ResultListener], metrics: Metrics) -> Worker:
    """Faust runs the application (lifecycle, signals, the timer); the batch data plane
    (agents/dataplane.py) reads and checkpoints every input partition, the merge stage's too.
    The Faust app gets an id of its own: Faust always joins a consumer group of its app id,
    with its own assignor, and the data plane's group is the app id. Faust starts the data
    plane only once its own group has an assignment, so its consumer is a static member too:
    a restarted worker would otherwise wait for its dead Faust member's session to expire."""
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
    plane = BatchDataPlane(settings, metrics, [PrometheusExporter(metrics, smallest_ms), *listeners], clock)
    app.service(plane)  # type: ignore[arg-type]  # an instance: Faust starts it as it is

    @app.timer(settings.update_interval_seconds)
    async def every_second() -> None:
        await plane.tick()

    return Worker(app, [], None, metrics, plane)
