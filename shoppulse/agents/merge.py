"""The merge agent: partials topic -> the core's `MergeDriver` -> kpi-results, Prometheus, any listener.

The partials topic has one partition, so one worker merges; its state (latest snapshot
per partition, progress marks) is a changelogged table like every other state.
"""

from __future__ import annotations

import asyncio
import time

import faust
from faust.types import TP

from ..outputs.base import ResultListener
from ..outputs.publisher import ResultsPublisher
from ..settings import Settings
from ..streams.pipeline import MergeDriver
from ..topics import MERGE_TABLE
from .batcher import Batcher
from .clock import ClockPublisher


class ResultsPipeline:
    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        partials: faust.TopicT,
        listeners: list[ResultListener],
        clock: ClockPublisher,
    ):
        self.app = app
        self.clock = clock
        self.settings = settings
        self.partials = partials
        self.results_topic = app.topic(
            settings.topics.results, key_serializer="raw", value_serializer="raw", partitions=settings.partitions
        )
        self.table = app.Table(MERGE_TABLE, partitions=1, key_type=bytes, value_type=bytes)
        self.publisher = ResultsPublisher()
        self.listeners = [self.publisher, *listeners]
        self.driver: MergeDriver | None = None
        # The contract: non-final updates at most once a second per record, even when
        # `update_interval_seconds` is set lower.
        self.open_update_interval = max(1.0, settings.update_interval_seconds)
        # The timer and the merge agent both send results. Sends await, so without this lock
        # a window's non-final updates could reach the topic after its final record.
        self.emit_lock = asyncio.Lock()

    def _driver(self) -> MergeDriver:
        if self.driver is None:
            self.driver = MergeDriver(self.settings, restore=[(k.decode(), v) for k, v in self.table.items()])
        return self.driver

    def forget(self) -> None:
        """A rebalance started: the merger is rebuilt from the table if the partition comes back."""
        self.driver = None

    def moved_away(self) -> None:
        """After a rebalance the partials partition is on another worker, which now exports."""
        for listener in self.listeners:
            listener.on_merge_revoked()

    async def process(self, stream: faust.StreamT, events: list[faust.EventT]) -> None:
        driver = self._driver()
        results = driver.apply(event.value for event in events)
        stream._set_current_event(events[-1])  # type: ignore[attr-defined]  # table writes need the current event
        for key, value in driver.take_changes().items():
            if value is None:
                self.table.pop(key.encode(), None)
            else:
                self.table[key.encode()] = value
        async with self.emit_lock:
            await self._emit(results)
        await self.clock.publish(driver.stream_clocks(int(time.time() * 1000)), always=False)

    def open_updates_task(self):
        """A Faust task: non-final updates, `open_update_interval` apart at least. Its own loop,
        not the timer: asyncio.sleep never wakes early (a timer may)."""

        async def run() -> None:
            while True:
                await asyncio.sleep(self.open_update_interval)
                await self.tick()

        return run

    async def tick(self) -> None:
        """Non-final updates of open windows changed since the last tick."""
        async with self.emit_lock:  # computed under the lock: only windows not final yet
            if self.driver is not None:
                await self._emit(self.driver.open_updates())
        if self.driver is None and self._holds_partials():
            self._driver()  # no partials since it got the partition (all quiet): the clocks must still go out
        if self.driver is not None:
            await self.clock.publish(self.driver.stream_clocks(int(time.time() * 1000)), always=True)

    def _holds_partials(self) -> bool:
        """Whether this worker merges: it holds the partials partition, its table recovered."""
        app = self.app
        recovery = app.tables.recovery  # type: ignore[attr-defined]  # on faust's TableManager, not its interface
        if app.rebalancing or app.in_recovery or not recovery.completed.is_set():
            return False
        return TP(self.partials.get_topic_name(), 0) in app.consumer.assignment()

    async def _emit(self, results) -> None:
        if not results:
            return
        for listener in self.listeners:
            listener.on_results(results)
        for key, value in self.publisher.take():
            await self.results_topic.send(key=key, value=value)


def wire_merge(
    app: faust.App, settings: Settings, partials: faust.TopicT, listeners: list[ResultListener], clock: ClockPublisher
) -> ResultsPipeline:
    pipeline = ResultsPipeline(app, settings, partials, listeners, clock)
    batcher = Batcher(settings.batch_max_events, pipeline.process, app)

    async def merge(stream):
        async for event in stream.noack().events():
            await batcher.add(stream, event)

    app.agent(partials, name="merge")(merge)
    app.task(batcher.flush_periodically(settings.batch_within_seconds))
    app.task(pipeline.open_updates_task())
    return pipeline
