"""The transport-free pipeline driver: what a worker does with records, minus the transport.

- `SourceDriver`: one source stream's partitions. Feed it a batch of raw records of one
  partition; it parses them, runs the partition's engine, and hands back dead letters and
  counts (`FeedResult`). Collect the partition's state changes (`take_changes`) and the
  partials for the merge stage (`take_partials`); `tick` moves idle watermarks.
- `MergeDriver`: the merge stage. Feed it encoded partials; it returns window results.
- `Pipeline`: both, connected by lists, for the in-process tests and the benchmark.

The batch data plane's partition tasks (agents/source_task.py, agents/merge_task.py) drive the same
two objects; only they know about topics, transactions and offsets. The clock is always
passed in: nothing here reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from ..settings import Settings
from .clock import STATE_PREFIX as CLOCK_STATE
from .clock import StreamClocks
from .cold import ColdStore, MemoryStore
from .engines import ENGINES, PartitionEngine
from .events import DAY_MS, STREAMS, InvalidEvent, Parsed, Stream, dead_letter, parse
from .merge import Merger, WindowResult
from .partials import Progress, decode_partial

# Restores a partition's engine state: partition -> its (state key, value) rows.
StateReader = Callable[[int], Iterable[tuple[str, bytes]]]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One source record as the transport delivered it."""

    offset: int
    value: bytes
    key: bytes | None = None
    timestamp_ms: int = 0  # the record's Kafka timestamp (for the processing latency)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes  # the kpi-dead-letters record (JSON), see `events.dead_letter`
    reason: str


# The outcome of a source record (the `outcome` label of shoppulse_events_total).
OUTCOMES = ("ok", "invalid", "late", "duplicate")


@dataclass
class FeedResult:
    """What one batch of one partition did."""

    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    invalid: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    first_response_seconds: list[tuple[float, str, str]] = field(default_factory=list)  # (s, channel, priority)
    resolution_seconds: list[float] = field(default_factory=list)
    watermarks: int = 0  # watermark records: not events, in no outcome
    filter_false_positives: int = 0  # dedup Bloom filter answers of "maybe" for a new id (streams/cold.py)


class SourceDriver:
    """The partitions of one source stream held by this process."""

    def __init__(
        self,
        stream: Stream,
        settings: Settings,
        topic: str,
        restore: StateReader | None = None,
        cold: ColdStore | None = None,
    ):
        self.stream = stream
        self.settings = settings
        self.topic = topic
        self.restore = restore
        self.cold = cold if cold is not None else MemoryStore()  # the engines' cold state (streams/cold.py)
        self.engines: dict[int, PartitionEngine] = {}
        self.max_payload_bytes = settings.max_payload_bytes
        self.max_future_ms = int(settings.max_future_seconds * 1000) if settings.max_future_seconds else DAY_MS

    def engine(self, partition: int) -> PartitionEngine:
        """The partition's engine, restored from its state on first use."""
        engine = self.engines.get(partition)
        if engine is None:
            engine = self.engines[partition] = ENGINES[self.stream](partition, self.settings, self.cold)
            if self.restore is not None:
                engine.restore(self.restore(partition))
        return engine

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions moved away: drop their in-memory state (their store keeps it)."""
        for partition in partitions:
            self.engines.pop(partition, None)

    def feed(self, partition: int, records: Sequence[RawRecord], now_ms: int) -> FeedResult:
        """Parse and process one batch of one partition, in offset order, received at `now_ms`."""
        result = FeedResult()
        parsed: list[Parsed] = []
        kept: list[RawRecord] = []
        for record in records:
            try:
                parsed.append(
                    parse(
                        self.stream,
                        record.value,
                        max_bytes=self.max_payload_bytes,
                        max_future_ms=self.max_future_ms,
                        now_ms=now_ms,
                    )
                )
                kept.append(record)
            except InvalidEvent as exc:
                result.invalid += 1
                result.dead_letters.append(self._dead_letter(partition, record, exc.reason, exc.detail, now_ms))
        engine = self.engine(partition)
        batch = engine.process(parsed, now_ms)
        for item, index in batch.late:
            detail = f"ts {item.ts_ms} is behind the watermark {engine.watermark.value} by more than the grace period"
            result.dead_letters.append(self._dead_letter(partition, kept[index], "late", detail, now_ms))
        result.accepted = batch.accepted
        result.duplicates = batch.duplicates
        result.watermarks = batch.watermarks
        result.late = len(batch.late)
        result.first_response_seconds = batch.first_response_seconds
        result.resolution_seconds = batch.resolution_seconds
        result.filter_false_positives = engine.event_ids.take_false_positives()
        return result

    def _dead_letter(self, partition: int, record: RawRecord, reason: str, detail: str, now_ms: int) -> DeadLetter:
        value = dead_letter(
            payload=record.value,
            reason=reason,
            detail=detail,
            topic=self.topic,
            partition=partition,
            offset=record.offset,
            now_ms=now_ms,
        )
        return DeadLetter(record.key, orjson.dumps(value), reason)

    def tick(
        self, now_ms: int, behind: Callable[[int], bool] = lambda partition: False, clock_ms: int | None = None
    ) -> None:
        """Every partition held: is it idle (`behind`: records of it wait unread), and if so it
        adopts the stream's clock (`clock_ms`, from the merge stage: streams/clock.py)."""
        for partition, engine in self.engines.items():
            engine.tick(now_ms, behind=behind(partition), clock_ms=clock_ms)

    def take_changes(self, partition: int) -> dict[str, bytes | None]:
        """The partition's state keys changed since the last call, serialised (None: deleted)."""
        engine = self.engines.get(partition)
        return engine.take_changes() if engine is not None else {}

    def take_partials(self, partition: int, *, open_at_ms: int | None = None) -> list[tuple[bytes, bytes]]:
        """(key, value) records for the partials topic; with `open_at_ms` (the wall clock), also
        the snapshots of open windows that are due (the non-final updates: `take_outbox`)."""
        engine = self.engines.get(partition)
        if engine is None:
            return []
        return [(m.family.encode(), m.to_bytes()) for m in engine.take_outbox(open_at_ms)]

    def finals_waiting(self, partition: int) -> bool:
        """Whether the partials not taken yet finalise a window (the worker sends them at once)."""
        engine = self.engines.get(partition)
        return engine is not None and engine.finals_waiting

    def watermark_lag_seconds(self, now_ms: int) -> float | None:
        """How far the slowest partition's watermark is behind the clock."""
        if not self.engines:
            return None
        return max((now_ms - engine.watermark.value) / 1000 for engine in self.engines.values())


class MergeDriver:
    """The merge stage: encoded partials in, window results out."""

    def __init__(self, settings: Settings, restore: Iterable[tuple[str, bytes]] = ()):
        self.merger = Merger(settings)
        self.clocks = StreamClocks()
        rows = list(restore)
        self.merger.restore((k, v) for k, v in rows if not k.startswith(CLOCK_STATE))
        self.clocks.restore((k, v) for k, v in rows if k.startswith(CLOCK_STATE))

    def apply(self, partials: Iterable[bytes]) -> list[WindowResult]:
        results: list[WindowResult] = []
        for value in partials:
            message = decode_partial(value)
            if isinstance(message, Progress):
                self.clocks.observe(message)
            results.extend(self.merger.apply(message))
        return results

    def stream_clocks(self, now_ms: int) -> dict[Stream, int]:
        """Each source stream's clock for its idle partitions (streams/clock.py)."""
        return self.clocks.clocks(now_ms)

    def open_updates(self) -> list[WindowResult]:
        """Non-final results of open windows changed since the last call."""
        return self.merger.open_updates()

    def take_changes(self) -> dict[str, bytes | None]:
        """Merge-state keys changed since the last call, serialised (None: deleted)."""
        return {**self.merger.take_changes(), **self.clocks.take_changes()}


class Pipeline:
    """Every stream's `SourceDriver` and the `MergeDriver`, connected in memory.

    With `durable`, each source partition's state changes are written to a dict as a worker's
    checkpoints write them to the changelog, so `restart()` can rebuild the engines from it,
    as after a crash.
    """

    def __init__(self, settings: Settings | None = None, *, durable: bool = False, cold: ColdStore | None = None):
        self.settings = settings or Settings()
        self.stores: dict[tuple[Stream, int], dict[str, bytes]] = {}
        self.durable = durable
        self.cold = cold if cold is not None else MemoryStore()
        self.sources = {stream: self._source(stream) for stream in STREAMS}
        self.merge = MergeDriver(self.settings)
        self.results: list[WindowResult] = []

    def _source(self, stream: Stream) -> SourceDriver:
        def restore(partition: int) -> Iterable[tuple[str, bytes]]:
            return list(self.stores.get((stream, partition), {}).items())

        return SourceDriver(stream, self.settings, self.settings.topics.source(stream), restore, self.cold)

    def feed(
        self,
        stream: Stream,
        partition: int,
        records: Sequence[RawRecord],
        now_ms: int,
        *,
        open_at_ms: int | None = None,
    ) -> FeedResult:
        """One batch of one partition, then its partials straight into the merge stage (with
        `open_at_ms`, the wall clock, also the open windows' snapshots that are due, as a worker's
        checkpoint sends them)."""
        source = self.sources[stream]
        result = source.feed(partition, records, now_ms)
        self._collect(stream, partition, open_at_ms=open_at_ms)
        return result

    def tick(self, now_ms: int, partitions: int | None = None) -> None:
        """The 1-second timer: every partition of every stream (each has an engine, as every
        partition of a running worker does) reports whether it is idle; then the idle ones
        adopt the stream clocks. A worker's clocks take a trip through a topic; here they
        reach every engine in the same tick."""
        for source in self.sources.values():
            for partition in range(self.settings.partitions if partitions is None else partitions):
                source.engine(partition)
        for _ in range(2):
            clocks = self.merge.stream_clocks(now_ms)
            for stream, source in self.sources.items():
                source.tick(now_ms, clock_ms=clocks.get(stream))
                for partition in list(source.engines):
                    self._collect(stream, partition, open_at_ms=now_ms)
        self.on_results(self.merge.open_updates())

    def restart(self) -> None:
        """Drop every engine; the next batch or tick rebuilds it from the written state."""
        for source in self.sources.values():
            source.forget(list(source.engines))

    def _collect(self, stream: Stream, partition: int, *, open_at_ms: int | None = None) -> None:
        source = self.sources[stream]
        self.on_state(stream, partition, source.take_changes(partition))
        self.on_partials(source.take_partials(partition, open_at_ms=open_at_ms))

    def on_state(self, stream: Stream, partition: int, changes: dict[str, bytes | None]) -> None:
        """Where a partition's state changes go: a worker writes them to the partition's changelog
        in its next checkpoint."""
        if self.durable:
            store = self.stores.setdefault((stream, partition), {})
            for key, value in changes.items():
                if value is None:
                    store.pop(key, None)
                else:
                    store[key] = value

    def on_partials(self, partials: list[tuple[bytes, bytes]]) -> None:
        """Where partials go: straight into the merge stage (a worker sends them through a topic)."""
        self.on_results(self.merge.apply(value for _, value in partials))

    def on_results(self, results: list[WindowResult]) -> None:
        """Where window results go (the tests collect them, the bench exports them)."""
        self.results.extend(results)
