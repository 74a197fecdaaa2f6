"""The stream clock: how far an idle partition may move its watermark. Pure: no Faust, no I/O.

A window of a family is final once every partition's progress has passed it (merge.py), and
each partition's engine dead-letters what is older than its own watermark minus grace. So a
partition that has no records (idle) must still move its watermark, or it holds back every
window of its stream; but it must not move it from the wall clock, or a historical replay
into a running worker becomes late. The merge stage sees every partition's progress, and
computes for each source stream:

- while some partitions are active (not idle): the smallest watermark among them. An idle
  partition adopts it: it stops holding back the others, and time on it only moves as far
  as the stream itself has shown;
- while every partition that reported is idle (the stream went quiet): the largest
  watermark when it went quiet, plus the wall-clock time since, so an outage of live traffic
  still closes windows (as zeros), and a finished replay closes its last windows at
  wall-clock speed from where its event time stood. (A partition with records waiting
  unread is not idle however busy its worker is: windows.py, `BEHIND_IDLE_FACTOR`.)
- while no partition of the stream has seen an event: the clock of the other streams that
  carry live traffic (a clock within `LIVE_WITHIN_MS` of the wall clock), so that a stream
  quiet since the worker started (no orders at all during a checkout outage) still closes
  its windows as zeros; none while no stream is live, so that a replay of old events into
  a worker that has seen nothing yet, or only other old events, is never late.

The worker's merge stage publishes the clocks every second and whenever they change
(agents/clock.py); every worker reads them, and its idle engines adopt them (engines/base.py
`tick`). The state (each partition's last reported watermark and idle flag) is rebuilt from
the Progress messages, and kept in the merge stage's state (changelogged by its checkpoints)
so that a restart of the merging worker during an outage does not stop the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson

from .engines import ENGINES
from .events import Stream
from .partials import Progress

STREAM_OF_FAMILY: dict[str, Stream] = {family: stream for stream, cls in ENGINES.items() for family in cls.families}
# A stream's clock this close to the wall clock means live traffic (event time lags the wall
# clock by the ingest delay, the grace and the idle timeout, minutes at most).
LIVE_WITHIN_MS = 15 * 60_000
CLOCK_KEY = b"clock"  # the key of every clock record (the topic is compacted)
STATE_PREFIX = "c|"  # merge-state keys of the clock's state: "c|<stream>|<partition>"


@dataclass(slots=True)
class PartitionStatus:
    watermark_ms: int
    idle: bool


class StreamClocks:
    """Each source stream's clock, from the partitions' Progress messages."""

    def __init__(self) -> None:
        self.status: dict[tuple[Stream, int], PartitionStatus] = {}
        self.quiet: dict[Stream, tuple[int, int]] = {}  # stream -> (watermark when it went quiet, wall ms then)
        self.changed: set[tuple[Stream, int]] = set()

    def observe(self, progress: Progress) -> None:
        stream = STREAM_OF_FAMILY.get(progress.family)
        if stream is None or progress.watermark_ms is None:  # an older worker's Progress: no status
            return
        key = (stream, progress.partition)
        status = PartitionStatus(progress.watermark_ms, progress.idle)
        if self.status.get(key) != status:
            self.status[key] = status
            self.changed.add(key)

    def clocks(self, wall_ms: int) -> dict[Stream, int]:
        """The clock of every stream that has one, at wall-clock time `wall_ms`."""
        out: dict[Stream, int] = {}
        for stream in ENGINES:
            clock = self._clock(stream, wall_ms)
            if clock is not None:
                out[stream] = clock
        live = [clock for clock in out.values() if wall_ms - clock <= LIVE_WITHIN_MS]
        for stream in ENGINES:
            if stream not in out and live and self._never_seen(stream):
                out[stream] = min(live)
        return out

    def _never_seen(self, stream: Stream) -> bool:
        """Every partition of the stream reported, idle, and none has seen an event."""
        reported = self._reported(stream)
        return bool(reported) and all(s.idle and s.watermark_ms <= 0 for s in reported)

    def _reported(self, stream: Stream) -> list[PartitionStatus]:
        return [s for (name, _), s in self.status.items() if name == stream]

    def _clock(self, stream: Stream, wall_ms: int) -> int | None:
        reported = self._reported(stream)
        active = [s.watermark_ms for s in reported if not s.idle]
        if active:
            self.quiet.pop(stream, None)
            return min(active) or None  # 0: an active partition that has seen nothing holds it back
        if not reported:
            return None
        if stream not in self.quiet:
            base = max(s.watermark_ms for s in reported)
            if base <= 0:
                return None  # nothing seen yet: time does not start from nothing (see clocks)
            self.quiet[stream] = (base, wall_ms)
        base, since = self.quiet[stream]
        return base + max(0, wall_ms - since)

    # ------------------------------------------------------------ persistence

    def take_changes(self) -> dict[str, bytes | None]:
        changes: dict[str, bytes | None] = {}
        for stream, partition in self.changed:
            status = self.status.get((stream, partition))
            value = None if status is None else orjson.dumps([status.watermark_ms, status.idle])
            changes[f"{STATE_PREFIX}{stream}|{partition}"] = value
        self.changed.clear()
        return changes

    def restore(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Rows with `STATE_PREFIX` keys; when the stream was quiet, it is quiet from now on."""
        for key, raw in items:
            stream, _, partition = key[len(STATE_PREFIX) :].partition("|")
            if stream in ENGINES:
                watermark_ms, idle = orjson.loads(raw)
                self.status[(stream, int(partition))] = PartitionStatus(watermark_ms, idle)  # type: ignore[index]


def encode_clocks(clocks: Mapping[Stream, int], wall_ms: int) -> bytes:
    """The value of a clock record: every stream's clock, and when it was computed."""
    return orjson.dumps({"clocks": dict(clocks), "at_ms": wall_ms})


def decode_clocks(value: bytes) -> dict[str, int]:
    return {str(stream): int(ms) for stream, ms in orjson.loads(value)["clocks"].items()}
