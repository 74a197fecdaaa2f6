"""The per-partition watermark: event-time progress and the idle advance to the wall clock."""

from __future__ import annotations

from shoppulse.streams.windows import BEHIND_IDLE_FACTOR, Watermark, window_start

TIMEOUT_MS = 3_000
WALL_MS = 1_800_000_000_000  # the wall clock of these tests
EVENT_MS = 1_700_000_000_000  # a historical replay, far behind the wall clock


def test_window_start_aligns_to_the_size():
    minute = 28_333_333 * 60_000  # 2023-11-14 22:13 UTC
    assert window_start(minute, 60_000) == minute
    assert window_start(minute + 59_999, 60_000) == minute
    assert window_start(minute + 60_000, 60_000) == minute + 60_000


def test_watermark_is_the_largest_event_time_seen():
    wm = Watermark(TIMEOUT_MS)
    for ts in (EVENT_MS + 5, EVENT_MS, EVENT_MS + 3):
        wm.observe(ts, WALL_MS)
    assert wm.value == EVENT_MS + 5


def test_idle_partition_advances_to_the_wall_clock_after_the_timeout():
    wm = Watermark(TIMEOUT_MS)
    wm.observe(EVENT_MS, WALL_MS)
    assert not wm.idle_advance(WALL_MS + TIMEOUT_MS - 1)
    assert wm.value == EVENT_MS
    assert wm.idle_advance(WALL_MS + TIMEOUT_MS)
    assert wm.value == WALL_MS + TIMEOUT_MS


def test_idle_clock_starts_at_the_first_tick_of_a_partition_never_seen():
    wm = Watermark(TIMEOUT_MS)
    assert not wm.idle_advance(WALL_MS)
    assert not wm.idle_advance(WALL_MS + TIMEOUT_MS - 1)
    assert wm.idle_advance(WALL_MS + TIMEOUT_MS)


def test_partition_behind_its_unread_records_waits_longer_before_advancing():
    wm = Watermark(TIMEOUT_MS)
    wm.observe(EVENT_MS, WALL_MS)
    stalled_ms = WALL_MS + 3 * TIMEOUT_MS  # a stalled worker, well past the idle timeout
    assert not wm.idle_advance(stalled_ms, behind=True)
    assert wm.value == EVENT_MS, "a stall must not move the watermark past the unread backlog"
    assert wm.idle_advance(WALL_MS + BEHIND_IDLE_FACTOR * TIMEOUT_MS, behind=True)


def test_idle_advance_never_moves_the_watermark_back():
    wm = Watermark(TIMEOUT_MS)
    future_ms = WALL_MS + 10 * TIMEOUT_MS
    wm.observe(future_ms, WALL_MS)
    assert not wm.idle_advance(WALL_MS + 2 * TIMEOUT_MS)
    assert wm.value == future_ms
