"""The merge stage's task: the partials partition -> the core's `MergeDriver` (streams/pipeline.py)
-> merge state, kpi-results records and stream clocks, checkpointed as every task is
(agents/task.py). The window results reach the sensors (the Prometheus exporter) once the
checkpoint that holds their kpi-results records has committed."""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiokafka import ConsumerRecord, TopicPartition

from ..outputs import kpi_results
from ..streams.clock import CLOCK_KEY, encode_clocks
from ..streams.events import Stream
from ..streams.merge import WindowResult
from ..streams.pipeline import MergeDriver
from ..topics import MERGE_TABLE, changelog_topic, clock_topic
from .task import PartitionTask, TaskContext


class MergeTask(PartitionTask[list[WindowResult]]):
    name = "merge"
    slice_size = 10  # one partial can finalise many windows (a year of backfill, every KPI)

    def __init__(self, tp: TopicPartition, context: TaskContext):
        super().__init__(tp, context)
        self.changelog = TopicPartition(changelog_topic(self.settings, MERGE_TABLE), 0)
        self.driver = MergeDriver(self.settings)
        self.sent_clocks: dict[Stream, int] | None = None

    def new_tally(self) -> list[WindowResult]:
        return []

    def restore(self, rows: Iterable[tuple[bytes, bytes]], committed: int | None) -> None:
        super().restore(rows, committed)
        self.driver = MergeDriver(self.settings, restore=((k.decode(), v) for k, v in rows))
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
        self.pending.outputs.append((clock_topic(self.settings), CLOCK_KEY, encode_clocks(clocks, now_ms)))
        self.sent_clocks = dict(clocks)

    def _emit(self, results: list[WindowResult]) -> None:
        if not results:
            return
        pending = self.pending
        pending.outputs.extend(kpi_results.records(self.settings.topics.results, results, int(time.time() * 1000)))
        pending.tally.extend(results)
        pending.finals = pending.finals or any(result.final for result in results)

    def take_state_changes(self) -> dict[str, bytes | None]:
        return self.driver.take_changes()

    def on_committed(self, tally: list[WindowResult]) -> None:
        if tally:
            self.sensor.on_results_committed(tally)
