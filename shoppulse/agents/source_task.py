"""A source partition's task: its records -> the core's `SourceDriver` (streams/pipeline.py) ->
state, dead letters and partials, checkpointed as every task is (agents/task.py)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiokafka import ConsumerRecord, TopicPartition

from ..outputs.base import SourceTally
from ..settings import Settings
from ..streams.cold import ColdStore
from ..streams.events import Stream
from ..streams.pipeline import RawRecord, SourceDriver
from ..streams.state_keys import state_rows, table_key
from ..topics import changelog_topic, partials_topic, state_table
from .task import Output, PartitionTask, TaskContext


class StagedSource:
    """One source stream's `SourceDriver`, shared by the stream's tasks in this worker, restoring
    each partition's engine from the changelog rows staged for it."""

    def __init__(self, stream: Stream, settings: Settings, cold: ColdStore):
        self.stream = stream
        self.topic = settings.topics.source(stream)
        self.staged: dict[int, Iterable[tuple[str, bytes]]] = {}
        self.driver = SourceDriver(stream, settings, self.topic, restore=self._rows, cold=cold)

    def _rows(self, partition: int) -> Iterable[tuple[str, bytes]]:
        return self.staged.pop(partition, [])


class SourceTask(PartitionTask[SourceTally]):
    def __init__(self, tp: TopicPartition, context: TaskContext, source: StagedSource):
        super().__init__(tp, context)
        self.name = source.stream
        self.source = source
        self.driver = source.driver
        self.changelog = TopicPartition(changelog_topic(self.settings, state_table(source.stream)), tp.partition)
        self.partials = partials_topic(self.settings)

    def new_tally(self) -> SourceTally:
        return SourceTally()

    def state_key(self, key: str) -> bytes:
        return table_key(self.tp.partition, key)

    def restore(self, rows: Iterable[tuple[bytes, bytes]], committed: int | None) -> None:
        super().restore(rows, committed)
        partition = self.tp.partition
        self.source.staged[partition] = state_rows(partition, rows)
        self.driver.forget([partition])
        self.driver.engine(partition)  # restored from the staged rows

    def forget_state(self) -> None:
        self.driver.forget([self.tp.partition])

    def feed(self, records: list[ConsumerRecord], now_ms: int) -> None:
        raw = [RawRecord(r.offset, r.value or b"", r.key, r.timestamp) for r in records]
        result = self.driver.feed(self.tp.partition, raw, now_ms)
        pending = self.pending
        dead_letters = self.settings.topics.dead_letters
        pending.outputs.extend((dead_letters, letter.key, letter.value) for letter in result.dead_letters)
        now_s = now_ms / 1000
        pending.tally.add(result, (max(0.0, now_s - r.timestamp / 1000) for r in records))
        pending.fed += len(records)
        self.position = records[-1].offset + 1

    def take_state_changes(self) -> dict[str, bytes | None]:
        return self.driver.take_changes(self.tp.partition)

    def finals_waiting(self) -> bool:
        return self.driver.finals_waiting(self.tp.partition)

    def take_outputs(self, *, open_snapshots: bool) -> list[Output]:
        open_at_ms = int(time.time() * 1000) if open_snapshots else None
        partials = self.driver.take_partials(self.tp.partition, open_at_ms=open_at_ms)
        return [(self.partials, key, value) for key, value in partials]

    def on_committed(self, tally: SourceTally) -> None:
        self.sensor.on_source_committed(self.tp.topic, tally)
