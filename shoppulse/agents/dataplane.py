"""The batch data plane: every input partition read in batches with aiokafka and checkpointed
in Kafka transactions (agents/task.py).

One consumer group (the app id) reads the three source topics and the
partials topic; the partials partition is one more input partition, so the merge stage is
checkpointed the same way and its kpi-results records are committed with its input offset.
Per batch, each partition's records go to its task (`SourceTask` feeds the core's
`SourceDriver`, `MergeTask` the `MergeDriver`); a task is checkpointed every
`checkpoint_interval_seconds` (`catch_up_checkpoint_interval_seconds` while a batch or more
of its records wait unread), after `checkpoint_max_events` records, when its partition is
revoked and when the worker stops. A checkpoint's transaction commits in the background while
the loop fetches and feeds on (its broker round trips would otherwise stall every partition);
a task starts its next checkpoint once the previous one has committed, and a revocation or
stop waits for it.

Faust stays the application: this is a `mode.Service` started and stopped with the Faust app
(signals, shutdown), and the app's timer calls `tick`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from mode import Service

from ..kafka.options import bootstrap_servers, client_options
from ..outputs.base import Sensor
from ..settings import Settings
from ..streams.events import STREAMS
from ..topics import partials_topic
from .clock import ClockReader
from .coldstore import RocksStore
from .localstate import LocalChangelogs
from .merge_task import MergeTask
from .restore import open_tasks
from .source_task import SourceTask, StagedSource
from .task import PartitionTask, TaskContext, TaskState

log = logging.getLogger(__name__)

POLL_MS = 100  # longest wait for records, so checkpoints and the stop flag are looked at often
RETRY_SECONDS = 1.0
CHECKPOINT_BUDGET_SECONDS = 0.02  # of checkpoints taken per round of the loop (see _start_checkpoints)


def group_instance_id(settings: Settings) -> str:
    """The static-membership id: the setting, or one created once and kept in the data dir, so a
    restarted worker rejoins as the same member and gets its partitions back at once."""
    if settings.group_instance_id:
        return settings.group_instance_id
    path = Path(settings.data_dir) / "group-instance-id"
    if path.exists():
        return path.read_text().strip()
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:40]
    instance = f"{host}-{uuid.uuid4().hex[:8]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(instance + "\n")
    return instance


class Rebalance(ConsumerRebalanceListener):
    def __init__(self, plane: BatchDataPlane):
        self.plane = plane

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.plane.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.plane.on_assigned(set(assigned))


class BatchDataPlane(Service):
    """This worker's input partitions: consumer, tasks, checkpoints."""

    def __init__(self, settings: Settings, sensor: Sensor, clocks: ClockReader, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.clocks = clocks
        self.sensor = sensor
        self.group_id = settings.app_id
        # The dedup ids and the visitors and customers seen, on disk (agents/coldstore.py).
        self.cold = RocksStore(Path(settings.data_dir) / "cold-state")
        # The committed changelog rows of the partitions held, so an open reads only the tail.
        self.local = LocalChangelogs(Path(settings.data_dir) / "local-state")
        self.context = TaskContext(settings, self.group_id, sensor, self.local)
        self.sources = {settings.topics.source(s): StagedSource(s, settings, self.cold) for s in STREAMS}
        self.partials_topic = partials_topic(settings)
        self.tasks: dict[TopicPartition, PartitionTask] = {}  # every assigned partition's, in any state
        self.merging = False  # whether this worker held the partials partition
        # The contract: non-final updates at most once a second per record, also across a
        # rebalance that gives the partials partition back to this worker.
        self.open_update_interval = max(1.0, settings.update_interval_seconds)
        self.last_open_updates = 0.0
        # One of: a batch being fed, a checkpoint, a rebalance callback, a tick.
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.reader: AIOKafkaConsumer | None = None  # changelog restores (no group)
        self.stopping = False
        self.loop_task: asyncio.Task | None = None

    # ------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        settings = self.settings
        session_ms = int(settings.group_session_timeout_seconds * 1000)
        options = client_options(settings.security)
        servers = bootstrap_servers(settings.broker)
        self.reader = AIOKafkaConsumer(
            bootstrap_servers=servers, isolation_level="read_committed", enable_auto_commit=False, **options
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=servers,
            group_id=self.group_id,
            group_instance_id=group_instance_id(settings),
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, min(3000, session_ms // 3)),
            **options,
        )
        await self.reader.start()
        await self.consumer.start()
        self.consumer.subscribe([*self.sources, self.partials_topic], listener=Rebalance(self))
        self.loop_task = asyncio.ensure_future(self._run())

    async def on_stop(self) -> None:
        """SIGTERM or stop: finish the batch in hand, checkpoint every partition, close."""
        self.stopping = True
        log.info("stopping: a last checkpoint of %d partitions", len(self.tasks))
        if self.loop_task is not None:
            await asyncio.gather(self.loop_task, return_exceptions=True)
        async with self.lock:
            await self._checkpoint(self._running())
            await self._close(list(self.tasks))
        for client in (self.consumer, self.reader):
            if client is not None:
                await client.stop()
        self.cold.close()
        self.local.close()

    # ------------------------------------------------------------ the loop

    async def _run(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        while not self.stopping:
            if any(t.state in (TaskState.CREATED, TaskState.SUSPENDED) for t in self.tasks.values()):
                async with self.lock:
                    await self._open()
            try:
                batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=self.settings.batch_max_events)
            except KafkaError as exc:  # broker away: aiokafka reconnects by itself
                log.warning("fetch failed: %r", exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            now_ms = int(time.time() * 1000)
            for tp, records in batch.items():
                task = self.tasks.get(tp)
                size = task.slice_size if task is not None else len(records)
                for start in range(0, len(records), size):
                    if self.stopping:
                        break  # the rest is read again from the last checkpoint
                    # The lock is taken per slice, so a rebalance callback waits one slice at most.
                    async with self.lock:
                        if not self._feed(tp, records[start : start + size], now_ms):
                            break
                    await asyncio.sleep(0)  # heartbeats (see task.SENDS_PER_YIELD)
            async with self.lock:
                await self._finish_checkpoints([t for t in self._running() if t.written])
                self._start_checkpoints()

    def _start_checkpoints(self) -> None:
        """Start the due checkpoints: finals first, then the longest waiting. Taking one
        serialises the partition's changed state, tens of ms for a busy partition; after
        CHECKPOINT_BUDGET_SECONDS of that the rest wait for the next round, so records fetched
        meanwhile wait for one budget, not for every partition's checkpoint."""
        now = time.monotonic()
        backlog = self.settings.batch_max_events
        due = [t for t in self._running() if not t.committing and t.due(now, catching_up=self._lag(t.tp) >= backlog)]
        due.sort(key=lambda t: (not t.finals_waiting(), t.last_checkpoint))
        started = time.perf_counter()
        for task in due:
            task.start_checkpoint()
            if time.perf_counter() - started >= CHECKPOINT_BUDGET_SECONDS:
                break

    def _feed(self, tp: TopicPartition, records: list, now_ms: int) -> bool:
        task = self.tasks.get(tp)
        if task is None or not task.opened:
            return False  # revoked, fenced or suspended meanwhile: read again from its last checkpoint
        # A batch fetched before a rebalance may repeat records fed already.
        records = [r for r in records if r.offset >= task.position]
        if records:
            task.feed(records, now_ms)
        return True

    def _running(self) -> list[PartitionTask]:
        return [t for t in self.tasks.values() if t.state is TaskState.RUNNING]

    async def tick(self) -> None:
        """The app's timer: idle partitions adopt their stream's clock, the merge stage's
        non-final updates and clocks, lag gauges."""
        async with self.lock:
            now_ms = int(time.time() * 1000)
            clocks = self.clocks.clocks
            for topic, source in self.sources.items():
                behind = lambda partition, topic=topic: self._behind(topic, partition)  # noqa: E731
                source.driver.tick(now_ms, behind=behind, clock_ms=clocks.get(source.stream))
                self.sensor.on_lag(topic, source.driver.watermark_lag_seconds(now_ms), self._consumer_lag(topic))
            # Measured on the wall clock, as the records' `emitted_at`, from the end of the last
            # updates: their `emitted_at` is taken once they are computed, which takes a while.
            open_updates = time.time() - self.last_open_updates >= self.open_update_interval
            for task in self._running():
                if isinstance(task, MergeTask):
                    task.tick(now_ms, open_updates=open_updates)
                    if open_updates:
                        self.last_open_updates = time.time()

    def _behind(self, topic: str, partition: int) -> bool:
        """Whether records of the partition wait unread here (or that cannot be told yet)."""
        tp = TopicPartition(topic, partition)
        task = self.tasks.get(tp)
        end = self._readable_end(tp)
        return task is None or end is None or end > task.position

    def _readable_end(self, tp: TopicPartition) -> int | None:
        """The last stable offset from the consumer's last fetch (no network call)."""
        consumer = self.consumer
        if consumer is None or tp not in consumer.assignment():
            return None
        lso = consumer.last_stable_offset(tp)
        return lso if lso is not None and lso >= 0 else consumer.highwater(tp)

    def _lag(self, tp: TopicPartition) -> int:
        """Records of the partition not fed yet, as of the last fetch (0 when unknown)."""
        task = self.tasks.get(tp)
        end = self._readable_end(tp)
        return 0 if task is None or end is None else max(0, end - task.position)

    def _consumer_lag(self, topic: str) -> int:
        return sum(self._lag(tp) for tp in self.tasks if tp.topic == topic)

    # ------------------------------------------------------------ checkpoints

    async def _checkpoint(self, tasks: list[PartitionTask]) -> None:
        """Checkpoint the tasks and wait for it (revocation, stop)."""
        await self._settle(tasks, await asyncio.gather(*(t.checkpoint() for t in tasks), return_exceptions=True))

    async def _finish_checkpoints(self, tasks: list[PartitionTask]) -> None:
        """The outcome of the tasks' background checkpoints (`PartitionTask.start_checkpoint`)."""
        await self._settle(tasks, await asyncio.gather(*(t.finish_checkpoint() for t in tasks), return_exceptions=True))

    async def _settle(self, tasks: list[PartitionTask], results: list) -> None:
        """Suspend the tasks whose checkpoint failed, to reopen them; close the fenced ones and rejoin."""
        fenced = [t.tp for t, result in zip(tasks, results) if isinstance(result, ProducerFenced)]
        for task, result in zip(tasks, results):
            if isinstance(result, BaseException) and task.tp not in fenced:
                log.warning("%s: checkpoint failed (%r); reopening from the last checkpoint", task.tp, result)
                self._suspend([task])
        if fenced and not self.stopping:
            # A newer owner started the partition's producer: this worker missed a rebalance.
            # Drop the uncommitted work and rejoin; if the group gives the partition back, it is
            # reopened from its last checkpoint (private aiokafka API: no public rejoin call).
            log.warning("%s: fenced by a newer owner; rejoining the group", sorted(map(str, fenced)))
            await self._close(fenced)
            assert self.consumer is not None
            self.consumer._coordinator.request_rejoin()

    def _suspend(self, tasks: list[PartitionTask]) -> None:
        """The tasks' state is ahead of (or not yet at) their last checkpoint: pause their
        partitions until `_open` reopens them from there."""
        for task in tasks:
            task.suspend()
        assert self.consumer is not None
        self.consumer.pause(*(t.tp for t in tasks))

    async def _open(self) -> None:
        """Open the tasks of newly assigned partitions, and reopen suspended ones: fence, restore,
        seek (agents/restore.py), then fetch again. Not in the rebalance callback: aiokafka
        starts heartbeating only after it, and a restore can outlast the session timeout."""
        assert self.reader is not None and self.consumer is not None
        tasks = [t for t in self.tasks.values() if t.state in (TaskState.CREATED, TaskState.SUSPENDED)]
        await asyncio.gather(*(t.stop_producer() for t in tasks), return_exceptions=True)
        try:
            restored = await open_tasks(tasks, self.reader, self.consumer, self.local)
        except Exception as exc:
            log.warning("opening %s failed (%r); retrying", sorted(str(t.tp) for t in tasks), exc)
            self._suspend([t for t in tasks if t.state in (TaskState.RESTORING, TaskState.RUNNING)])
            await asyncio.sleep(RETRY_SECONDS)
            return
        for r in restored:
            self.sensor.on_restored(r.full, r.records)
        assigned = self.consumer.assignment()
        self.consumer.resume(*(t.tp for t in tasks if t.tp in assigned))
        if any(isinstance(t, MergeTask) for t in tasks):
            # The previous owner may have sent non-final updates just before it let go.
            self.last_open_updates = time.time()

    async def _close(self, tps: Iterable[TopicPartition]) -> None:
        tasks = [self.tasks.pop(tp) for tp in list(tps) if tp in self.tasks]
        await asyncio.gather(*(t.close() for t in tasks), return_exceptions=True)

    # ------------------------------------------------------------ rebalances

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Checkpoint what was fed from the revoked partitions, then let them go."""
        async with self.lock:
            await self._checkpoint([t for t in self._running() if t.tp in revoked])
            await self._close(revoked)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.lock:
            new: list[PartitionTask] = []
            for tp in sorted(assigned):
                if tp in self.tasks:
                    continue
                if tp.topic == self.partials_topic:
                    new.append(MergeTask(tp, self.context))
                else:
                    new.append(SourceTask(tp, self.context, self.sources[tp.topic]))
            for task in new:
                self.tasks[task.tp] = task
            if new:
                assert self.consumer is not None
                self.consumer.pause(*(t.tp for t in new))  # until opened by the loop
            merging = any(tp.topic == self.partials_topic for tp in assigned)
            if self.merging and not merging:
                self.sensor.on_merge_revoked()  # another worker exports the KPIs now
            self.merging = merging
