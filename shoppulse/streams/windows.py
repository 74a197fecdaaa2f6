"""Event-time windows and the per-partition watermark. Pure: no Faust, no I/O."""

from __future__ import annotations

from dataclasses import dataclass


def window_start(ts_ms: int, size_ms: int) -> int:
    return ts_ms - ts_ms % size_ms


# How many idle timeouts a partition that is behind (its consumer knows of records not yet
# processed here) waits before it counts as idle: a stalled worker must not take its own
# backlog for silence, yet a partition whose unread offsets are only transaction markers
# must become idle in the end.
BEHIND_IDLE_FACTOR = 5
# While behind, quiet time counts at most this much per check (engines are checked every
# second): a worker too busy to tick for 5 s has not seen 5 s of silence, it has a backlog.
BEHIND_MAX_QUIET_PER_CHECK_MS = 1000


@dataclass
class Watermark:
    """Event-time progress of one source partition.

    It is the largest event time the partition has accepted, or the stream clock it adopted
    while idle (see streams/clock.py), whichever is larger; it never moves back. A partition
    is idle after `idle_timeout_ms` of wall-clock time without records (`BEHIND_IDLE_FACTOR`
    times longer while records of it wait unread, counting at most
    `BEHIND_MAX_QUIET_PER_CHECK_MS` per check, and from the check that first saw them). Only
    an idle partition adopts the clock: by adopting it, the partition itself promises that
    anything older is late.
    """

    idle_timeout_ms: int
    event_ms: int = 0  # max event time accepted (persisted)
    adopted_ms: int = 0  # the stream clock adopted while idle (restored from the reported progress)
    last_arrival_wall_ms: int | None = None
    last_check_wall_ms: int | None = None
    quiet_ms: int = 0  # wall-clock time without records, as counted by check_idle
    behind: bool = False  # at the last check, records of it waited unread
    idle: bool = False

    @property
    def value(self) -> int:
        return max(self.event_ms, self.adopted_ms)

    def observe(self, ts_ms: int, wall_ms: int) -> None:
        if ts_ms > self.event_ms:
            self.event_ms = ts_ms
        self.arrived(wall_ms)

    def arrived(self, wall_ms: int) -> None:
        """Records of the partition arrived (accepted or not): it is not idle."""
        self.last_arrival_wall_ms = wall_ms
        self.quiet_ms = 0
        self.idle = False

    def check_idle(self, wall_ms: int, behind: bool = False) -> bool:
        """Whether the partition is idle now (`behind`: records of it wait unread)."""
        if self.last_arrival_wall_ms is None:
            self.last_arrival_wall_ms = wall_ms  # start the idle clock at the first tick
        if behind and not self.behind:
            # Records of it wait unread: whatever the silence before, it is over. An idle
            # partition adopting the clock now would turn those records late.
            self.quiet_ms = 0
            self.last_arrival_wall_ms = wall_ms
        self.behind = behind
        since = max(self.last_arrival_wall_ms, self.last_check_wall_ms or 0)
        quiet = max(0, wall_ms - since)
        self.quiet_ms += min(quiet, BEHIND_MAX_QUIET_PER_CHECK_MS) if behind else quiet
        self.last_check_wall_ms = wall_ms
        timeout_ms = self.idle_timeout_ms * (BEHIND_IDLE_FACTOR if behind else 1)
        self.idle = self.quiet_ms >= timeout_ms
        return self.idle

    def adopt(self, clock_ms: int) -> bool:
        """While idle, move to the stream clock. Returns True when the watermark moved."""
        if not self.idle or clock_ms <= self.value:
            return False
        self.adopted_ms = clock_ms
        return True
