"""The source agent, one per source topic: a batch of Faust events -> the core's
`SourceDriver` (parse, dedup, watermark, engine) -> the state table, dead letters, partials.

Per batch (not per event) it writes changed state to the changelogged table, sends the
dead letters, and hands partition snapshots to the merge stage.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from ..outputs.prometheus import Metrics
from ..settings import Settings
from ..streams.events import Stream
from ..streams.pipeline import RawRecord, SourceDriver
from ..streams.state_keys import split_table_key, table_key
from ..topics import state_table
from .batcher import Batcher
from .clock import ClockReader


class SourcePipeline:
    """One source topic on this worker: Faust events in, the core's `SourceDriver` in the middle,
    the state table, dead letters, partials and metrics out."""

    def __init__(
        self,
        app: faust.App,
        stream: Stream,
        settings: Settings,
        metrics: Metrics,
        partials: faust.TopicT,
        clock: ClockReader,
    ):
        self.app = app
        self.stream = stream
        self.clock = clock
        self.settings = settings
        self.metrics = metrics
        self.topic_name = settings.topics.source(stream)
        self.topic = app.topic(
            self.topic_name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )
        self.dead_letters = app.topic(
            settings.topics.dead_letters, key_serializer="raw", value_serializer="raw", partitions=settings.partitions
        )
        self.partials = partials
        self.send_lock = asyncio.Lock()  # see send_partials
        # One changelogged table per source, every partition's rows in it (state_keys.table_key).
        self.table = app.Table(state_table(stream), partitions=settings.partitions, key_type=bytes, value_type=bytes)
        self.driver = SourceDriver(stream, settings, self.topic_name, restore=self._state_rows)
        self.lag_by_partition: dict[int, int] = {}
        self.next_offset: dict[int, int] = {}  # partition -> offset after the last processed event
        self.start_offset: dict[int, int] = {}  # partition -> committed offset, while none is processed
        self.last_event: dict[int, tuple[faust.StreamT, faust.EventT]] = {}  # for table writes off the stream
        count = metrics.events
        self.counted = {o: count.labels(self.topic_name, o) for o in ("ok", "invalid", "late", "duplicate")}

    def _state_rows(self, partition: int) -> Iterable[tuple[str, bytes]]:
        rows = ((split_table_key(raw), value) for raw, value in self.table.items())
        return [(key, value) for (owner, key), value in rows if owner == partition]

    def forget(self, partitions: set[int]) -> None:
        """Partitions moved to another worker: drop their in-memory state (the table keeps it)."""
        self.driver.forget(partitions)
        for partition in partitions:
            self.lag_by_partition.pop(partition, None)
            self.next_offset.pop(partition, None)
            self.start_offset.pop(partition, None)
            self.last_event.pop(partition, None)

    async def process(self, stream: faust.StreamT, events: list[faust.EventT]) -> None:
        now_ms = int(time.time() * 1000)
        by_partition: dict[int, list[faust.EventT]] = defaultdict(list)
        for event in events:
            by_partition[event.message.partition].append(event)
        for partition, part_events in by_partition.items():
            records = [RawRecord(e.message.offset, e.value or b"", e.message.key) for e in part_events]
            result = self.driver.feed(partition, records, now_ms)
            for letter in result.dead_letters:
                self.metrics.dead_letters.labels(letter.reason).inc()
                await self.dead_letters.send(key=letter.key, value=letter.value)
            self.counted["invalid"].inc(result.invalid)
            self.counted["ok"].inc(result.accepted)
            self.counted["duplicate"].inc(result.duplicates)
            self.counted["late"].inc(result.late)
            self.metrics.filter_false_positives.labels(self.topic_name).inc(result.filter_false_positives)
            for seconds, channel, priority in result.first_response_seconds:
                self.metrics.first_response.labels(channel, priority).observe(seconds)
            for seconds in result.resolution_seconds:
                self.metrics.resolution.observe(seconds)
            # Table writes pick their changelog partition from the current event, so write
            # this partition's changes while one of its events is current (private Faust API).
            stream._set_current_event(part_events[-1])  # type: ignore[attr-defined]
            self.last_event[partition] = (stream, part_events[-1])
            for key, value in self.driver.take_changes(partition).items():
                full_key = table_key(partition, key)
                if value is None:
                    self.table.pop(full_key, None)
                else:
                    self.table[full_key] = value
            await self.send_partials(partition)
            latency = self.metrics.latency.labels(self.topic_name)
            for event in part_events:
                latency.observe(max(0.0, now_ms / 1000 - event.message.timestamp))
            self.next_offset[partition] = part_events[-1].message.offset + 1

    async def send_partials(self, partition: int, *, open_at_ms: int | None = None) -> None:
        # The agent and the timer both send; a send can wait (a full producer buffer). Without the
        # lock a snapshot taken earlier could reach the merge stage after a later one of the same
        # window, and replace it: the partials must go out in the order they were taken.
        async with self.send_lock:
            for key, value in self.driver.take_partials(partition, open_at_ms=open_at_ms):
                await self.partials.send(key=key, value=value)

    async def tick(self) -> None:
        """Every second: idle partitions adopt the stream clock, non-final snapshots, watermark lag."""
        now_ms = int(time.time() * 1000)
        assigned = self._assigned()
        for partition in assigned:
            # A partition with no message since this worker started must still report progress
            # (once idle, by adopting the stream clock), or its families would never finalise.
            self.driver.engine(partition)
        self.driver.tick(now_ms, behind=self._behind, clock_ms=self.clock.clocks.get(self.stream))
        for partition in list(self.driver.engines):
            if partition in assigned:
                self._write_tick_state(partition)
            await self.send_partials(partition, open_at_ms=now_ms)
        lag = self.driver.watermark_lag_seconds(now_ms)
        if lag is not None:
            self.metrics.watermark_lag.labels(self.topic_name).set(lag)

    def _write_tick_state(self, partition: int) -> None:
        """Write what the tick changed (an adopted clock moves the progress promised to the merge
        stage), so a restart restores it: events older than that must stay late. Table writes
        need a current event of the partition (see `process`): the last one processed here. A
        partition with none keeps its changes for its first batch."""
        last = self.last_event.get(partition)
        if last is None:
            return
        stream, event = last
        stream._set_current_event(event)  # type: ignore[attr-defined]  # private Faust API, as in process
        for key, value in self.driver.take_changes(partition).items():
            full_key = table_key(partition, key)
            if value is None:
                self.table.pop(full_key, None)
            else:
                self.table[full_key] = value

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
        # Nothing processed since this worker got the partition: the committed offset decides
        # (not the lag gauge, up to 5 s old: an idle partition's first records must count).
        start = self.start_offset.get(partition)
        return start is None or highwater > start

    def _assigned(self) -> set[int]:
        """This worker's partitions of the topic, once their state is recovered (never during a rebalance)."""
        app = self.app
        recovery = app.tables.recovery  # type: ignore[attr-defined]  # on faust's TableManager, not its interface
        if app.rebalancing or app.in_recovery or not recovery.completed.is_set():
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
            if tp.partition in assigned and tp.partition not in self.next_offset:
                self.start_offset[tp.partition] = committed.get(tp.partition, 0)
            position = self.next_offset.get(tp.partition, committed.get(tp.partition, 0))
            if tp.partition in assigned and ends.get(tp) is not None:
                self.lag_by_partition[tp.partition] = max(0, ends[tp] - position)
        self.metrics.consumer_lag.labels(self.topic_name).set(sum(self.lag_by_partition.values()))


def wire_source(
    stream_name: Stream, app: faust.App, settings: Settings, metrics: Metrics, partials, clock: ClockReader
) -> SourcePipeline:
    """One agent per source topic. Events are acked only after their batch is processed and
    its state written, so a crash replays them (at-least-once, idempotent snapshots)."""
    pipeline = SourcePipeline(app, stream_name, settings, metrics, partials, clock)
    batcher = Batcher(settings.batch_max_events, pipeline.process, app)

    async def consume(stream):
        # stream.take_events() can pair a value with the wrong event under load (seen here:
        # dead letters naming the wrong offset), so batches are built from events() directly.
        async for event in stream.noack().events():
            await batcher.add(stream, event)

    app.agent(pipeline.topic, name=stream_name)(consume)
    app.task(batcher.flush_periodically(settings.batch_within_seconds))
    return pipeline
