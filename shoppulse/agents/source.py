"""Wiring shared by the three source agents: raw batch -> parse -> engine -> table + outputs.

Per batch (not per event) it writes changed state to the changelogged table, sends the
dead letters, and hands partition snapshots to the merge stage.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import faust
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from ..streams.engine import ENGINES, PartitionEngine
from ..streams.events import DAY_MS, InvalidEvent, Parsed, dead_letter, parse
from ..streams.exporters import Metrics
from ..streams.settings import Settings
from ..streams.topics import client_options, state_table

# Consumer lag is re-read from the broker this often, so it keeps rising while nothing is
# processed (a stuck or starved worker), which is what the gauge is for.
LAG_REFRESH_SECONDS = 5.0
LAG_TIMEOUT_SECONDS = 10.0


class SourcePipeline:
    def __init__(self, app: faust.App, stream: str, settings: Settings, metrics: Metrics, partials: faust.TopicT):
        self.app = app
        self.stream = stream
        self.settings = settings
        self.metrics = metrics
        self.topic_name = settings.topics.source(stream)
        self.topic = app.topic(self.topic_name, key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw", partitions=settings.partitions)  # fmt: skip
        self.dead_letters = app.topic(settings.topics.dead_letters, key_serializer="raw", value_serializer="raw",
                                      partitions=settings.partitions)  # fmt: skip
        self.partials = partials
        # One changelogged table per source: keys are "<partition>|<state key>".
        self.table = app.Table(state_table(stream), partitions=settings.partitions,
                               key_type=bytes, value_type=bytes)  # fmt: skip
        self.engines: dict[int, PartitionEngine] = {}
        self.last_event: dict[int, faust.EventT] = {}
        self.lag_by_partition: dict[int, int] = {}
        self.next_offset: dict[int, int] = {}  # partition -> offset after the last processed event
        self.max_future_ms = int(settings.max_future_seconds * 1000) if settings.max_future_seconds else DAY_MS
        count = metrics.events
        self.counted = {o: count.labels(self.topic_name, o) for o in ("ok", "invalid", "late", "duplicate")}

    def engine(self, partition: int) -> PartitionEngine:
        engine = self.engines.get(partition)
        if engine is None:
            engine = self.engines[partition] = ENGINES[self.stream](partition, self.settings)
            prefix = f"{partition}|".encode()
            engine.restore(
                (key[len(prefix) :].decode(), value) for key, value in self.table.items() if key.startswith(prefix)
            )
        return engine

    def forget(self, partitions: set[int]) -> None:
        """Partitions moved to another worker: drop their in-memory state (the table keeps it)."""
        for partition in partitions:
            self.engines.pop(partition, None)
            self.last_event.pop(partition, None)
            self.lag_by_partition.pop(partition, None)
            self.next_offset.pop(partition, None)

    async def process(self, stream: faust.StreamT, events: list[faust.EventT]) -> None:
        now_ms = int(time.time() * 1000)
        by_partition: dict[int, list[faust.EventT]] = defaultdict(list)
        for event in events:
            by_partition[event.message.partition].append(event)
        for partition, part_events in by_partition.items():
            parsed: list[Parsed] = []
            parsed_events: list[faust.EventT] = []
            for event in part_events:
                try:
                    parsed.append(parse(self.stream, event.value or b"", max_bytes=self.settings.max_payload_bytes,
                                        max_future_ms=self.max_future_ms, now_ms=now_ms))  # fmt: skip
                    parsed_events.append(event)
                except InvalidEvent as exc:
                    self.counted["invalid"].inc()
                    await self._dead_letter(event, exc.reason, exc.detail)
            engine = self.engine(partition)
            result = engine.process(parsed, now_ms)
            for item, index in result.late:
                await self._dead_letter(parsed_events[index], "late",
                                        f"ts {item.ts_ms} is behind the watermark {engine.watermark.value} by more than the grace period")  # fmt: skip
            self.counted["ok"].inc(result.accepted)
            self.counted["duplicate"].inc(result.duplicates)
            self.counted["late"].inc(len(result.late))
            for seconds, channel, priority in result.first_response_seconds:
                self.metrics.first_response.labels(channel, priority).observe(seconds)
            for seconds in result.resolution_seconds:
                self.metrics.resolution.observe(seconds)
            last = part_events[-1]
            self.last_event[partition] = last
            # Table writes pick their changelog partition from the current event, so write
            # this partition's changes while one of its events is current.
            stream._set_current_event(last)
            prefix = f"{partition}|".encode()
            for key, value in engine.take_changes().items():
                full_key = prefix + key.encode()
                if value is None:
                    self.table.pop(full_key, None)
                else:
                    self.table[full_key] = value
            await self.send_partials(engine, snapshots_of_open=False)
            latency = self.metrics.latency.labels(self.topic_name)
            for event in part_events:
                latency.observe(max(0.0, now_ms / 1000 - event.message.timestamp))
        self._note_offsets(events)

    async def _dead_letter(self, event: faust.EventT, reason: str, detail: str) -> None:
        message = event.message
        record = dead_letter(payload=event.value or b"", reason=reason, detail=detail, topic=message.topic,
                             partition=message.partition, offset=message.offset)  # fmt: skip
        self.metrics.dead_letters.labels(reason).inc()
        await self.dead_letters.send(key=message.key, value=orjson.dumps(record))

    async def send_partials(self, engine: PartitionEngine, *, snapshots_of_open: bool) -> None:
        for message in engine.take_outbox(snapshots_of_open):
            await self.partials.send(key=message.family.encode(), value=message.to_bytes())

    async def tick(self) -> None:
        """Every second: idle watermarks, non-final snapshots, watermark lag."""
        now_ms = int(time.time() * 1000)
        for partition in self._assigned() - self.engines.keys():
            # A partition with no message since this worker started must still report progress
            # (after its idle timeout), or its families would never finalise.
            self.engine(partition)
        worst = 0.0
        for partition, engine in list(self.engines.items()):
            engine.tick(now_ms, behind=self._behind(partition))
            await self.send_partials(engine, snapshots_of_open=True)
            worst = max(worst, (now_ms - engine.watermark.value) / 1000)
        if self.engines:
            self.metrics.watermark_lag.labels(self.topic_name).set(worst)

    def _behind(self, partition: int) -> bool:
        """Whether records of the partition wait unread here, or that can't be told (mid-rebalance,
        before the first fetch). The highwater is the consumer's last fetch response: no network call."""
        try:
            highwater = self.app.consumer.highwater(TP(self.topic_name, partition))
        except (AssertionError, ConsumerNotStarted):  # aiokafka asserts the partition is assigned
            return True
        if highwater is None:
            return True
        position = self.next_offset.get(partition)
        if position is not None:
            return highwater > position
        # Nothing processed since this worker got the partition: the committed offset decides.
        return highwater > 0 and self.lag_by_partition.get(partition) != 0

    def _assigned(self) -> set[int]:
        """This worker's partitions of the topic, once their state is recovered (never during a rebalance)."""
        app = self.app
        if app.rebalancing or app.in_recovery or not app.tables.recovery.completed.is_set():
            return set()
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == self.topic_name}

    async def refresh_lag(self, reader: AIOKafkaConsumer, admin: AIOKafkaAdminClient) -> None:
        partitions = self._assigned()
        if not partitions:
            return
        tps = [TP(self.topic_name, p) for p in sorted(partitions)]
        ends = await reader.end_offsets(tps)
        unprocessed = [tp for tp in tps if tp.partition not in self.next_offset]
        committed = {}
        if unprocessed:
            offsets = await admin.list_consumer_group_offsets(self.settings.app_id, partitions=unprocessed)
            committed = {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        assigned = self._assigned()  # a rebalance may have run meanwhile
        for tp in tps:
            position = self.next_offset.get(tp.partition, committed.get(tp.partition, 0))
            if tp.partition in assigned and ends.get(tp) is not None:
                self.lag_by_partition[tp.partition] = max(0, ends[tp] - position)
        self.metrics.consumer_lag.labels(self.topic_name).set(sum(self.lag_by_partition.values()))

    def _note_offsets(self, events: list[faust.EventT]) -> None:
        """Where each partition stands, for the consumer lag (`refresh_lag`)."""
        for event in events:
            self.next_offset[event.message.partition] = event.message.offset + 1


def consumer_lag_task(app: faust.App, settings: Settings, sources: list[SourcePipeline]):
    """A Faust task: every few seconds, log end offsets (read with a client of its own, never
    through Faust's consumer thread, whose two workers also fetch) against the offset after
    the last event processed here, or the group's committed offset before any. So the gauge
    keeps rising when nothing is processed: a stuck or starved worker."""

    async def run() -> None:
        reader = AIOKafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False,
                                  **client_options(settings.security))  # fmt: skip
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker, **client_options(settings.security))
        started = False
        try:
            while True:
                await asyncio.sleep(LAG_REFRESH_SECONDS)
                try:
                    if not started:
                        await asyncio.wait_for(asyncio.gather(reader.start(), admin.start()), LAG_TIMEOUT_SECONDS)
                        started = True
                    for source in sources:
                        await asyncio.wait_for(source.refresh_lag(reader, admin), LAG_TIMEOUT_SECONDS)
                except (asyncio.TimeoutError, KafkaError, OSError):  # unreachable: keep the last figures
                    continue
        finally:
            await asyncio.gather(reader.stop(), admin.close(), return_exceptions=True)

    return run


def wire_source(stream_name: str, app: faust.App, settings: Settings, metrics: Metrics, partials) -> SourcePipeline:
    """One agent per source topic. Events are acked only after their batch is processed and
    its state written, so a crash replays them (at-least-once, idempotent snapshots)."""
    pipeline = SourcePipeline(app, stream_name, settings, metrics, partials)
    batcher = Batcher(settings.batch_max_events, pipeline.process, app)

    async def consume(stream):
        # stream.take_events() can pair a value with the wrong event under load (seen here:
        # dead letters naming the wrong offset), so batches are built from events() directly.
        async for event in stream.noack().events():
            await batcher.add(stream, event)

    app.agent(pipeline.topic, name=stream_name)(consume)
    app.task(batcher.flush_periodically(settings.batch_within_seconds))
    return pipeline


async def flush_writes(app: faust.App) -> None:
    """Wait until every table write and send made so far is acknowledged by the broker.

    Faust commits the offsets of acked events without waiting for their table writes, and
    its own `producer.flush()` gives up on the write buffer after 0.1 s without progress
    (`ProducerBuffer.flush_atmost`). Either can let a rebalance or a crash hand a partition on
    with its offsets committed but its last state writes still in this process, and then
    those events are lost. So the buffer is drained here until empty, before any ack."""
    buffer = app.producer.buffer
    while buffer.size:
        await buffer.flush()
    await app.producer.flush()


class Batcher:
    """Collects events into batches of at most `size`; `flush` (also periodically) processes,
    waits until the batch's writes are durable, and acks."""

    def __init__(self, size: int, process, app: faust.App):
        self.size = size
        self.process = process
        self.app = app
        self.events: list[faust.EventT] = []
        self.stream: faust.StreamT | None = None
        self.lock = asyncio.Lock()  # one batch at a time, in arrival order

    def flush_periodically(self, interval: float):
        """A Faust task flushing partial batches. Not a Faust timer: a batch may take longer
        than the interval, which is expected under load, not worth a warning."""

        async def run() -> None:
            while True:
                await asyncio.sleep(interval)
                await self.flush()

        return run

    async def add(self, stream: faust.StreamT, event: faust.EventT) -> None:
        self.stream = stream
        self.events.append(event)
        if len(self.events) >= self.size:
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            events, self.events = self.events, []
            if not events or self.stream is None:
                return
            await self.process(self.stream, events)
            await flush_writes(self.app)
            for event in events:
                event.ack()
