"""A partition task: one input partition's state, outputs and offset, checkpointed in Kafka
transactions (the batch data plane, agents/dataplane.py).

A `PartitionTask` owns one input partition: a source partition (agents/source_task.py) or the
partials partition (agents/merge_task.py). It keeps the partition's state in memory, collects
what the records since the last checkpoint produced, and writes all of it in **one Kafka
transaction**:

- the changed state keys, each once, to the partition's changelog
  (`<app_id>-<table>-changelog`, partition = input partition);
- the outputs: dead letters and partials (source), kpi-results records and clocks (merge);
- the input offset, with `send_offsets_to_transaction` to the consumer group.

What the records did is told to the sensors (outputs/base.py) only once that transaction has
committed: a failed checkpoint is fed again from the last committed one, and counts nothing twice.

The producer's `transactional_id` is fixed per input partition, so a new owner's producer fences
the old one (its next send or commit raises `ProducerFenced`) and aborts the transaction it left
open. Opening a task (agents/restore.py) starts that producer first, then restores the state,
then reads the committed offset: all three describe the same last committed checkpoint.

Once a checkpoint has committed, its state changes also go to the worker's local copy of the
changelog (agents/localstate.py), in one atomic batch with the changelog offset after them, so
that the next open reads only the changelog's tail.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from ..kafka.options import bootstrap_servers, client_options, compression
from ..outputs.base import Sensor
from ..settings import Settings
from ..topics import clock_topic, partials_topic
from .localstate import LocalChangelogs

# A transaction left open by a worker that died is aborted when the partition's next owner
# starts its producer; this only bounds how long readers wait if no owner ever comes.
TRANSACTION_TIMEOUT_MS = 60_000
# The consumer's heartbeats run on this event loop: long synchronous stretches are cut into
# slices, with a yield between them, or the group would take a busy worker for a dead one.
SENDS_PER_YIELD = 500
CHANGELOG_BATCH_BYTES = 256 * 1024  # per producer batch (aiokafka's default is 16 KiB)

Output = tuple[str, bytes | None, bytes | None]  # (topic, key, value)
Tally = TypeVar("Tally")  # what a task's sensors are told of a committed checkpoint


class TaskState(enum.Enum):
    """A task's life, as Kafka Streams' `Task.State`."""

    CREATED = "created"  # assigned; its partition is paused until the task is opened
    RESTORING = "restoring"  # producer started (earlier owners fenced), state being restored
    RUNNING = "running"  # fed and checkpointed
    SUSPENDED = "suspended"  # a checkpoint or an open failed: paused, to be reopened from the last checkpoint
    CLOSED = "closed"  # revoked, fenced or stopped: its producer is stopped


TRANSITIONS = {
    TaskState.CREATED: {TaskState.RESTORING, TaskState.CLOSED},
    TaskState.RESTORING: {TaskState.RUNNING, TaskState.SUSPENDED, TaskState.CLOSED},
    TaskState.RUNNING: {TaskState.SUSPENDED, TaskState.CLOSED},
    TaskState.SUSPENDED: {TaskState.RESTORING, TaskState.CLOSED},
    TaskState.CLOSED: set(),
}


class IllegalTransition(RuntimeError):
    pass


@dataclass(frozen=True)
class TaskContext:
    """What the tasks of one worker share."""

    settings: Settings
    group_id: str  # the consumer group the input offsets are committed to
    sensor: Sensor  # told what each committed checkpoint held
    local: LocalChangelogs | None = None  # the local copy of the changelogs (None: none kept)


def transactional_id(settings: Settings, name: str, partition: int) -> str:
    """One id per input partition (`<app_id>-<stream>-<partition>`, `<app_id>-merge-0`)."""
    return f"{settings.app_id}-{name}-{partition}"


@dataclass
class Pending(Generic[Tally]):
    """What the records since the last checkpoint produced, besides state changes."""

    tally: Tally  # what the sensors are told once committed
    outputs: list[Output] = field(default_factory=list)
    fed: int = 0  # records read since the last checkpoint
    finals: bool = False  # `outputs` hold final results (merge stage)


@dataclass
class Checkpoint(Generic[Tally]):
    """One checkpoint taken from a task, to be written in one transaction."""

    changes: dict[str, bytes | None]  # state key -> value (None: deleted)
    outputs: list[Output]
    position: int  # the input offset after the last record it holds
    tally: Tally  # told to the sensors once committed


class PartitionTask(Generic[Tally]):
    """One input partition's producer, state and offsets (subclasses: the state and outputs)."""

    name: str  # the transactional id's middle part
    changelog: TopicPartition
    slice_size = 2000  # records fed at once, between two yields to the event loop

    def __init__(self, tp: TopicPartition, context: TaskContext):
        self.tp = tp
        self.settings = settings = context.settings
        self.group_id = context.group_id
        self.sensor = context.sensor
        self.local = context.local  # the local copy of the changelog, written after each commit
        self.state = TaskState.CREATED
        self.producer: AIOKafkaProducer | None = None
        self.position = 0  # offset after the last record fed: the next checkpoint's input offset
        self.committed = 0  # the input offset of the last committed checkpoint
        self.pending = self.new_pending()
        self.writing: asyncio.Future | None = None  # the checkpoint being written (start_checkpoint)
        self.last_checkpoint = time.monotonic()
        self.last_open_snapshots = time.monotonic()
        self.single_partition_topics = (partials_topic(settings), clock_topic(settings))

    def transition(self, state: TaskState) -> None:
        if state not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.tp}: {self.state.value} -> {state.value}")
        self.state = state

    @property
    def opened(self) -> bool:
        return self.state is TaskState.RUNNING

    @property
    def transactional_id(self) -> str:
        return transactional_id(self.settings, self.name, self.tp.partition)

    def new_pending(self) -> Pending[Tally]:
        return Pending(self.new_tally())

    def new_tally(self) -> Tally:
        raise NotImplementedError

    async def start_producer(self) -> None:
        """Fences any earlier owner of the partition and aborts its open transaction."""
        self.transition(TaskState.RESTORING)
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

    def restore(self, rows: Iterable[tuple[bytes, bytes]], committed: int | None) -> None:
        """Rebuild the state from the changelog rows; resume after the committed offset."""
        assert self.state is TaskState.RESTORING, self.state
        self.position = self.committed = committed or 0
        self.pending = self.new_pending()
        self.last_checkpoint = self.last_open_snapshots = time.monotonic()
        self.transition(TaskState.RUNNING)

    def suspend(self) -> None:
        """A checkpoint or the open failed: the state is ahead of (or not yet at) the last
        checkpoint. Drop what was fed since; the task is reopened from the last checkpoint."""
        self.transition(TaskState.SUSPENDED)
        self.pending = self.new_pending()
        self.forget_state()

    async def stop_producer(self) -> None:
        """Stop the producer, after the background checkpoint (its outcome no longer matters:
        the task is closed or reopened from the committed state)."""
        writing, self.writing = self.writing, None
        if writing is not None:
            await asyncio.gather(writing, return_exceptions=True)
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await producer.stop()

    async def close(self) -> None:
        self.transition(TaskState.CLOSED)
        await self.stop_producer()
        self.forget_state()

    def forget_state(self) -> None:
        """Drop the in-memory state (it is restored from the changelog when the task reopens)."""

    def feed(self, records: list[ConsumerRecord], now_ms: int) -> None:
        raise NotImplementedError

    def take_state_changes(self) -> dict[str, bytes | None]:
        raise NotImplementedError

    def take_outputs(self, *, open_snapshots: bool) -> list[Output]:
        """Output records of this checkpoint besides the pending ones (partials; with
        `open_snapshots`, those of the open windows that are due)."""
        return []

    def on_committed(self, tally: Tally) -> None:
        """The checkpoint is durable: tell the sensors what it holds."""

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

    @property
    def written(self) -> bool:
        """Whether a background checkpoint has finished (committed or failed) and awaits `finish_checkpoint`."""
        return self.writing is not None and self.writing.done()

    def take_checkpoint(self) -> Checkpoint[Tally] | None:
        """Everything fed since the last checkpoint, taken out of the task (None: nothing to
        write). Synchronous, so the state, the outputs and the offset belong together; records
        fed afterwards go to the next checkpoint."""
        now = time.monotonic()
        open_snapshots = now - self.last_open_snapshots >= self.settings.checkpoint_interval_seconds
        changes = self.take_state_changes()
        outputs = self.pending.outputs + self.take_outputs(open_snapshots=open_snapshots)
        pending, self.pending = self.pending, self.new_pending()
        self.last_checkpoint = now
        if open_snapshots:
            self.last_open_snapshots = now
        if not changes and not outputs and self.position == self.committed:
            return None
        return Checkpoint(changes, outputs, self.position, pending.tally)

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

    async def write(self, checkpoint: Checkpoint[Tally]) -> None:
        """The checkpoint's state changes, outputs and input offset in one transaction; then the
        sensors hear of it."""
        # On any error the in-memory state is ahead of the committed one: the caller suspends
        # the task and reopens it (a new producer aborts this transaction, the state is restored).
        producer = self.producer
        assert producer is not None, "the task is not open"
        await producer.begin_transaction()
        rows = [(self.state_key(key), value) for key, value in checkpoint.changes.items()]
        last_batch = await self._send_changes(producer, rows)
        for sent, (topic, record_key, record_value) in enumerate(checkpoint.outputs, 1):
            partition = 0 if topic in self.single_partition_topics else None
            await producer.send(topic, record_value, key=record_key, partition=partition)
            if sent % SENDS_PER_YIELD == 0:
                await asyncio.sleep(0)
        if checkpoint.position != self.committed:
            await producer.send_offsets_to_transaction({self.tp: checkpoint.position}, self.group_id)
        await producer.commit_transaction()
        self.committed = checkpoint.position
        if self.local is not None and last_batch is not None:
            batch, size = last_batch
            offset = (await batch).offset + size  # after this checkpoint's last changelog row
            self.local.write(self.changelog, rows, offset, int(time.time() * 1000))
        self.on_committed(checkpoint.tally)

    async def _send_changes(
        self, producer: AIOKafkaProducer, rows: list[tuple[bytes, bytes | None]]
    ) -> tuple[asyncio.Future, int] | None:
        """The changelog rows to the changelog partition, in batches built here: one producer
        `send` per record costs a future, a partitioner call and an accumulator lookup each,
        the largest share of the checkpoint (docs/performance.md). Returns the last batch's
        future (its base offset) and size; None when there are no rows."""
        if not rows:
            return None
        topic, partition = self.changelog.topic, self.changelog.partition
        batch = producer.create_batch()
        size = 0
        for record_key, value in rows:
            if batch.append(key=record_key, value=value, timestamp=None) is None:  # full
                await producer.send_batch(batch, topic, partition=partition)
                await asyncio.sleep(0)  # heartbeats
                batch = producer.create_batch()
                batch.append(key=record_key, value=value, timestamp=None)  # a first record always fits
                size = 0
            size += 1
        return await producer.send_batch(batch, topic, partition=partition), size

    def state_key(self, key: str) -> bytes:
        """The changelog key of a state key."""
        return key.encode()
