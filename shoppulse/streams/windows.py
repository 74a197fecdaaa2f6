"""Event-time windows and the per-partition watermark. Pure: no Faust, no I/O."""

from __future__ import annotations

from dataclasses import dataclass


def window_start(ts_ms: int, size_ms: int) -> int:
    return ts_ms - ts_ms % size_ms


# How many idle timeouts a partition that is behind (its consumer knows of records not yet
# processed here) waits before advancing anyway: a stalled worker must not jump past its own
# backlog, yet windows must still close if the unread offsets are only transaction markers.
BEHIND_IDLE_FACTOR = 5


@dataclass
class Watermark:
    """Event-time progress of one source partition.

    It is the largest event time seen. When the partition has been silent for
    `idle_timeout_ms` of wall-clock time, it advances to the wall clock, so windows
    close (with zeros) during an outage, and the last windows of a historical replay
    close once the replay ends. A partition that is behind waits `BEHIND_IDLE_FACTOR`
    times longer.
    """

    idle_timeout_ms: int
    event_ms: int = 0  # max event time seen (persisted)
    idle_ms: int = 0  # wall-clock advance while idle (not persisted: a restart re-derives it)
    last_arrival_wall_ms: int | None = None

    @property
    def value(self) -> int:
        return max(self.event_ms, self.idle_ms)

    def observe(self, ts_ms: int, wall_ms: int) -> None:
        if ts_ms > self.event_ms:
            self.event_ms = ts_ms
        self.last_arrival_wall_ms = wall_ms

    def idle_advance(self, wall_ms: int, behind: bool = False) -> bool:
        """Advance to the wall clock when idle. Returns True when the watermark moved."""
        if self.last_arrival_wall_ms is None:
            self.last_arrival_wall_ms = wall_ms  # start the idle clock at the first tick
            return False
        timeout_ms = self.idle_timeout_ms * (BEHIND_IDLE_FACTOR if behind else 1)
        if wall_ms - self.last_arrival_wall_ms < timeout_ms or wall_ms <= self.value:
            return False
        self.idle_ms = wall_ms
        return True
