"""Transactional checkpoints of one input partition (the batch data plane, agents/dataplane.py).

A `PartitionTask` owns one input partition: a source partition (`SourceTask`) or the partials
partition (`MergeTask`). It keeps the partition's state in memory, collects what the records
since the last checkpoint produced, and writes all of it in **one Kafka transaction**:

- the changed state keys, each once, to the partition's changelog (the layout the Faust
  tables had: `<app_id>-<table>-changelog`, partition = input partition, keys as there);
- the outputs: dead letters and partials (source), kpi-results records (merge);
- the input offset, with `send_offsets_to_transaction` to the consumer group.

The producer's `transactional_id` is fixed per input partition (`transactional_id`), so a new
owner's producer fences the old one (its next send or commit raises `ProducerFenced`) and
aborts the transaction it left open. `open()` starts that producer first, then restores the
state read_committed from the changelog (to its last stable offset), then reads the committed
offset: all three describe the same last committed checkpoint.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from ..kafka.options import bootstrap_servers, client_options, compression
from ..outputs.base import ResultListener
from ..outputs.prometheus import Metrics
from ..outputs.publisher import ResultsPublisher
from ..settings import Settings
from ..streams.clock import CLOCK_KEY, encode_clocks
from ..streams.cold import ColdStore
from ..streams.events import Stream
from ..streams.pipeline import OUTCOMES, MergeDriver, RawRecord, SourceDriver
from ..streams.state_keys import split_table_key, table_key
from ..topics import MERGE_TABLE, changelog_topic, clock_topic, partials_topic, state_table

# A transaction left open by a worker that died is aborted when the partition's next owner
# starts its producer; this only bounds how long readers wait if no owner ever comes.
TRANSACTION_TIMEOUT_MS = 60_000
# The consumer's heartbeats run on this event loop (Faust's consumer has a thread of its own):
# long synchronous stretches are cut into slices, with a yield between them, or the group
# would take a busy worker for a dead one.
SENDS_PER_YIELD = 500
CHANGELOG_BATCH_BYTES = 256 * 1024  # per producer batch (aiokafka's default is 16 KiB)


def transactional_id(settings: Settings, name: str, partition: int) -> str:
    """One id per input partition (`<app_id>-<stream>-<partition>`, `<app_id>-merge-0`)."""
    return f"{settings.app_id}-{name}-{partition}"


async def read_changelog(
    reader: AIOKafkaConsumer, tps: Sequence[TopicPartition], timeout: float = 120.0
) -> dict[TopicPartition, dict[bytes, bytes]]:
    """The latest value of every key of the changelog partitions, read_committed to their last
    stable offset (`reader` is a read_committed consumer without a group)."""
    rows: dict[TopicPartition, dict[bytes, bytes]] = {tp: {} for tp in tps}
    if not tps:
        return rows
    reader.assign(list(tps))
    await reader.seek_to_beginning(*tps)
    ends = await reader.end_offsets(list(tps))
    deadline = time.monotonic() + timeout
    pending = {tp for tp in tps if ends[tp] > 0}
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"restoring {sorted(map(str, pending))} took over {timeout:.0f} s")
        batch = await reader.getmany(*pending, timeout_ms=500)
        for tp, records in batch.items():
            table = rows[tp]
            for record in records:
                if record.key is None:
                    continue
                if record.value is None:
                    table.pop(record.key, None)
                else:
                    table[record.key] = record.value
        pending = {tp for tp in pending if await reader.position(tp) < ends[tp]}
    return rows


@dataclass
class Pending:
    """What the records since the last checkpoint produced, besides state changes."""

    records: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)  # (topic, key, value)
    counts: dict[str, int] = field(default_factory=dict)  # outcome -> events, counted once committed
    dead_letter_reasons: list[str] = field(default_factory=list)
    fed: int = 0  # records read since the last checkpoint
    finals: bool = False  # `records` hold final results (merge stage)


@dataclass
class Checkpoint:
    """One checkpoint taken from a task, to be written in one transaction."""

    changes: dict[str, bytes | None]  # state key -> value (None: deleted)
    records: list[tuple[str, bytes | None, bytes | None]]  # outputs: (topic, key, value)
    position: int  # the input offset after the last record it holds
    pending: Pending  # counted once committed


class PartitionTask:
    """One input partition's producer, state and offsets (subclasses: the state and outputs)."""

    name: str  # the transactional id's middle part
    changelog: TopicPartition
    slice_size = 2000  # records fed at once, between two yields to the event loop

    def __init__(self, tp: TopicPartition, settings: Settings, group_id: str):
        self.tp = tp
        self.settings = settings
        self.group_id = group_id
        self.producer: AIOKafkaProducer | None = None
        self.position = 0  # offset after the last record fed: the next checkpoint's input offset
        self.committed = 0  # the input offset of the last committed checkpoint
        self.pending = Pending()
        self.writing: asyncio.Future | None = None  # the checkpoint being written (start_checkpoint)
        self.last_checkpoint = time.monotonic()
        self.last_open_snapshots = time.monotonic()
        self.single_partition_topics = (partials_topic(settings), clock_topic(settings))

    @property
    def transactional_id(self) -> str:
        return transactional_id(self.settings, self.name, self.tp.partition)

    async def start_producer(self) -> None:
        """Fences any earlier owner of the partition and aborts its open transaction."""
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(self.settings.broker),
            transactional_id=self.transactional_id,
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            linger_ms=5,
            max_batch_size=CHANGELOG_BATCH_BYTES,
            compression_type=compression(self.settings),
            **client_options(self.settings.security),
        )
        await self.producer.start()

    def restore(self, rows: dict[bytes, bytes], committed: int | None) -> None:
        """Rebuild the state from the changelog rows; resume after the committed offset."""
        self.position = self.committed = committed or 0
        self.pending = Pending()
        self.last_checkpoint = self.last_open_snapshots = time.monotonic()

    async def close(self) -> None:
        """Stop the producer, after the background checkpoint (its outcome no longer matters:
        the partition is given up or reopened from the committed state)."""
        writing, self.writing = self.writing, None
        if writing is not None:
            await asyncio.gather(writing, return_exceptions=True)
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await producer.stop()

    def feed(self, records: list[ConsumerRecord], now_ms: int) -> None:
        raise NotImplementedError

    def take_state_changes(self) -> dict[str, bytes | None]:
        raise NotImplementedError

    def take_outputs(self, *, open_snapshots: bool) -> list[tuple[str, bytes | None, bytes | None]]:
        """Output records of this checkpoint besides the pending ones (partials; with
        `open_snapshots`, those of the open windows that are due)."""
        return []

    def on_committed(self, pending: Pending) -> None:
        """The checkpoint is durable: count what it holds."""

    def finals_waiting(self) -> bool:
        """Whether what is pending finalises a window: then a live partition checkpoints at once."""
        return self.pending.finals

    def due(self, now: float, *, catching_up: bool) -> bool:
        """Whether to checkpoint now. While the partition works through a backlog
        (`catching_up`), checkpoints are further apart: each rewrites every changed session and
        window, and live updates of windows that will be final in seconds are worth little.
        A live partition checkpoints as soon as it holds finals: a window's final results pass
        two checkpoints (its source partitions', then the merge stage's) on their way out."""
        settings = self.settings
        if catching_up:
            interval = max(settings.checkpoint_interval_seconds, settings.catch_up_checkpoint_interval_seconds)
        elif self.finals_waiting():
            return True
        else:
            interval = settings.checkpoint_interval_seconds
        return self.pending.fed >= settings.checkpoint_max_events or now - self.last_checkpoint >= interval

    @property
    def committing(self) -> bool:
        """Whether a checkpoint's transaction is still on its way to the broker."""
        return self.writing is not None and not self.writing.done()

    def take_checkpoint(self) -> Checkpoint | None:
        """Everything fed since the last checkpoint, taken out of the task (None: nothing to
        write). Synchronous, so the state, the outputs and the offset belong together; records
        fed afterwards go to the next checkpoint."""
        now = time.monotonic()
        open_snapshots = now - self.last_open_snapshots >= self.settings.checkpoint_interval_seconds
        changes = self.take_state_changes()
        records = self.pending.records + self.take_outputs(open_snapshots=open_snapshots)
        pending, self.pending = self.pending, Pending()
        self.last_checkpoint = now
        if open_snapshots:
            self.last_open_snapshots = now
        if not changes and not records and self.position == self.committed:
            return None
        return Checkpoint(changes, records, self.position, pending)

    def start_checkpoint(self) -> bool:
        """Take a checkpoint and write it in the background (`writing`), so that fetching and
        feeding go on while its transaction commits (a few broker round trips: about 0.1-0.2 s
        here). One at a time: the caller waits until `committing` is over."""
        assert not self.committing, "the previous checkpoint is still committing"
        checkpoint = self.take_checkpoint()
        if checkpoint is None:
            return False
        self.writing = asyncio.ensure_future(self.write(checkpoint))
        return True

    async def finish_checkpoint(self) -> None:
        """Wait for the background checkpoint, if any; raise what it raised."""
        writing, self.writing = self.writing, None
        if writing is not None:
            await writing

    async def checkpoint(self) -> bool:
        """Finish the background checkpoint, then write everything fed since in one transaction
        and wait for it (revocation, stop). Returns whether there was anything to write."""
        await self.finish_checkpoint()
        checkpoint = self.take_checkpoint()
        if checkpoint is None:
            return False
        await self.write(checkpoint)
        return True

    async def write(self, checkpoint: Checkpoint) -> None:
        """The checkpoint's state changes, outputs and input offset in one transaction."""
        # On any error the in-memory state is ahead of the committed one: the caller reopens
        # the task (a new producer aborts this transaction, the state is restored again).
        producer = self.producer
        assert producer is not None, "the task is not open"
        await producer.begin_transaction()
        await self._send_changes(producer, checkpoint.changes)
        for sent, (topic, record_key, record_value) in enumerate(checkpoint.records, 1):
            partition = 0 if topic in self.single_partition_topics else None
            await producer.send(topic, record_value, key=record_key, partition=partition)
            if sent % SENDS_PER_YIELD == 0:
                await asyncio.sleep(0)
        if checkpoint.position != self.committed:
            await producer.send_offsets_to_transaction({self.tp: checkpoint.position}, self.group_id)
        await producer.commit_transaction()
        self.committed = checkpoint.position
        self.on_committed(checkpoint.pending)

    async def _send_changes(self, producer: AIOKafkaProducer, changes: dict[str, bytes | None]) -> None:
        """The state changes to the changelog partition, in batches built here: one producer
        `send` per record costs a future, a partitioner call and an accumulator lookup each,
        the largest share of the checkpoint (docs/performance.md)."""
        topic, partition = self.changelog.topic, self.changelog.partition
        batch = producer.create_batch()
        for key, value in changes.items():
            record_key = self.state_key(key)
            if batch.append(key=record_key, value=value, timestamp=None) is None:  # full
                await producer.send_batch(batch, topic, partition=partition)
                await asyncio.sleep(0)  # heartbeats
                batch = producer.create_batch()
                batch.append(key=record_key, value=value, timestamp=None)  # a first record always fits
        if changes:
            await producer.send_batch(batch, topic, partition=partition)

    def state_key(self, key: str) -> bytes:
        """The changelog key of a state key (the Faust table's key)."""
        return key.encode()


class StagedSource:
    """One source stream's `SourceDriver`, restoring each engine from the rows staged for it."""

    def __init__(self, stream: Stream, settings: Settings, cold: ColdStore):
        self.stream = stream
        self.topic = settings.topics.source(stream)
        self.staged: dict[int, list[tuple[str, bytes]]] = {}
        self.driver = SourceDriver(stream, settings, self.topic, restore=self._rows, cold=cold)

    def _rows(self, partition: int) -> Iterable[tuple[str, bytes]]:
        return self.staged.pop(partition, [])


class SourceTask(PartitionTask):
    """A source partition: records -> the core's `SourceDriver` -> state, dead letters, partials."""

    def __init__(self, tp: TopicPartition, settings: Settings, group_id: str, source: StagedSource, metrics: Metrics):
        super().__init__(tp, settings, group_id)
        self.name = source.stream
        self.source = source
        self.driver = source.driver
        self.metrics = metrics
        self.changelog = TopicPartition(changelog_topic(settings, state_table(source.stream)), tp.partition)

    def state_key(self, key: str) -> bytes:
        return table_key(self.tp.partition, key)

    def restore(self, rows: dict[bytes, bytes], committed: int | None) -> None:
        super().restore(rows, committed)
        partition = self.tp.partition
        split = ((split_table_key(raw), value) for raw, value in rows.items())
        self.source.staged[partition] = [(key, value) for (owner, key), value in split if owner == partition]
        self.driver.forget([partition])
        self.driver.engine(partition)  # restored from the staged rows

    def forget(self) -> None:
        self.driver.forget([self.tp.partition])

    def feed(self, records: list[ConsumerRecord], now_ms: int) -> None:
        raw = [RawRecord(r.offset, r.value or b"", r.key, r.timestamp) for r in records]
        result = self.driver.feed(self.tp.partition, raw, now_ms)
        pending = self.pending
        dead_letters = self.settings.topics.dead_letters
        for letter in result.dead_letters:
            pending.records.append((dead_letters, letter.key, letter.value))
            pending.dead_letter_reasons.append(letter.reason)
        counts = pending.counts
        for outcome, n in zip(OUTCOMES, (result.accepted, result.invalid, result.late, result.duplicates)):
            counts[outcome] = counts.get(outcome, 0) + n
        for seconds, channel, priority in result.first_response_seconds:
            self.metrics.first_response.labels(channel, priority).observe(seconds)
        for seconds in result.resolution_seconds:
            self.metrics.resolution.observe(seconds)
        self.metrics.filter_false_positives.labels(self.tp.topic).inc(result.filter_false_positives)
        latency = self.metrics.latency.labels(self.tp.topic)
        now_s = now_ms / 1000
        for record in records:
            latency.observe(max(0.0, now_s - record.timestamp / 1000))
        pending.fed += len(records)
        self.position = records[-1].offset + 1

    def take_state_changes(self) -> dict[str, bytes | None]:
        return self.driver.take_changes(self.tp.partition)

    def finals_waiting(self) -> bool:
        return self.driver.finals_waiting(self.tp.partition)

    def take_outputs(self, *, open_snapshots: bool) -> list[tuple[str, bytes | None, bytes | None]]:
        topic = partials_topic(self.settings)
        open_at_ms = int(time.time() * 1000) if open_snapshots else None
        partials = self.driver.take_partials(self.tp.partition, open_at_ms=open_at_ms)
        return [(topic, key, value) for key, value in partials]

    def on_committed(self, pending: Pending) -> None:
        for outcome, n in pending.counts.items():
            if n:
                self.metrics.events.labels(self.tp.topic, outcome).inc(n)
        for reason in pending.dead_letter_reasons:
            self.metrics.dead_letters.labels(reason).inc()


class MergeTask(PartitionTask):
    """The partials partition: partials -> the core's `MergeDriver` -> merge state, kpi-results."""

    name = "merge"
    slice_size = 10  # one partial can finalise many windows (a year of backfill, every KPI)

    def __init__(self, tp: TopicPartition, settings: Settings, group_id: str, listeners: list[ResultListener]):
        super().__init__(tp, settings, group_id)
        self.changelog = TopicPartition(changelog_topic(settings, MERGE_TABLE), 0)
        self.publisher = ResultsPublisher()
        self.listeners: list[ResultListener] = [self.publisher, *listeners]
        self.driver = MergeDriver(settings)
        self.sent_clocks: dict[str, int] | None = None

    def restore(self, rows: dict[bytes, bytes], committed: int | None) -> None:
        super().restore(rows, committed)
        self.driver = MergeDriver(self.settings, restore=[(k.decode(), v) for k, v in rows.items()])
        self.publisher.take()  # results of an attempt that was not committed
        self.sent_clocks = None

    def feed(self, records: list[ConsumerRecord], now_ms: int) -> None:
        self._emit(self.driver.apply(r.value for r in records if r.value is not None))
        self.pending.fed += len(records)
        self.position = records[-1].offset + 1
        self._publish_clocks(now_ms, always=False)

    def tick(self, now_ms: int, *, open_updates: bool) -> None:
        """With `open_updates`, the non-final results of open windows changed since the last call
        (the caller keeps them at least a second apart); the stream clocks (streams/clock.py), also
        as a heartbeat."""
        if open_updates:
            self._emit(self.driver.open_updates())
        self._publish_clocks(now_ms, always=True)

    def _publish_clocks(self, now_ms: int, *, always: bool) -> None:
        """To the clock topic, read by every worker (agents/clock.py `ClockReader`), with this
        checkpoint: when they changed, or with `always` (the once-a-second heartbeat)."""
        clocks = self.driver.stream_clocks(now_ms)
        if clocks == self.sent_clocks and not always:
            return
        self.pending.records.append((clock_topic(self.settings), CLOCK_KEY, encode_clocks(clocks, now_ms)))
        self.sent_clocks = dict(clocks)

    def _emit(self, results) -> None:
        if not results:
            return
        for listener in self.listeners:
            listener.on_results(results)
        topic = self.settings.topics.results
        self.pending.records.extend((topic, key, value) for key, value in self.publisher.take())
        self.pending.finals = self.pending.finals or any(result.final for result in results)

    def take_state_changes(self) -> dict[str, bytes | None]:
        return self.driver.take_changes()


async def open_tasks(tasks: Sequence[PartitionTask], reader: AIOKafkaConsumer, consumer: AIOKafkaConsumer) -> None:
    """Fence the partitions' earlier owners, restore their state and seek to their committed
    offsets, in that order (the committed offset is read after the fence, so it belongs to the
    same checkpoint as the restored state)."""
    await asyncio.gather(*(task.start_producer() for task in tasks))
    rows = await read_changelog(reader, [task.changelog for task in tasks])
    offsets = await asyncio.gather(*(consumer.committed(task.tp) for task in tasks))
    for task, committed in zip(tasks, offsets):
        task.restore(rows[task.changelog], committed)
        if committed is None:
            await consumer.seek_to_beginning(task.tp)
        else:
            consumer.seek(task.tp, committed)
