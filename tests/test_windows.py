"""The per-partition watermark: event-time progress, the idle flag, and adopting the stream clock."""

from __future__ import annotations

from shoppulse.streams.windows import BEHIND_IDLE_FACTOR, BEHIND_MAX_QUIET_PER_CHECK_MS, Watermark, window_start

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


def test_partition_is_idle_after_the_timeout_and_never_follows_the_wall_clock_by_itself():
    wm = Watermark(TIMEOUT_MS)
    wm.observe(EVENT_MS, WALL_MS)
    assert not wm.check_idle(WALL_MS + TIMEOUT_MS - 1)
    assert wm.check_idle(WALL_MS + TIMEOUT_MS)
    assert wm.check_idle(WALL_MS + 100 * TIMEOUT_MS)
    assert wm.value == EVENT_MS, "idle alone must not move event time (a replay would turn late)"


def test_idle_clock_starts_at_the_first_tick_of_a_partition_never_seen():
    wm = Watermark(TIMEOUT_MS)
    assert not wm.check_idle(WALL_MS)
    assert not wm.check_idle(WALL_MS + TIMEOUT_MS - 1)
    assert wm.check_idle(WALL_MS + TIMEOUT_MS)


def test_partition_behind_its_unread_records_waits_longer_before_it_is_idle():
    wm = Watermark(TIMEOUT_MS)
    wm.observe(EVENT_MS, WALL_MS)
    stalled_ms = WALL_MS + 3 * TIMEOUT_MS  # a stalled worker, well past the idle timeout
    assert not wm.check_idle(stalled_ms, behind=True)
    assert not wm.adopt(EVENT_MS + 60_000), "a partition with a backlog must not take the clock"
    assert wm.value == EVENT_MS
    # Quiet time counts from the check that first saw the backlog, a second per check at most.
    last = BEHIND_IDLE_FACTOR * TIMEOUT_MS // 1000
    for second in range(1, last):
        assert not wm.check_idle(stalled_ms + second * 1000, behind=True)
    assert wm.check_idle(stalled_ms + last * 1000, behind=True)


def test_a_stall_with_a_backlog_counts_as_one_check_not_as_silence():
    """A worker that could not tick for a long while has a backlog, not a quiet partition."""
    wm = Watermark(TIMEOUT_MS)
    wm.observe(EVENT_MS, WALL_MS)
    now = WALL_MS + 100 * TIMEOUT_MS  # the first tick after the stall
    checks = 1
    while not wm.check_idle(now, behind=True):
        now += 1000  # then a tick every second, records still waiting
        checks += 1
    assert checks == BEHIND_IDLE_FACTOR * TIMEOUT_MS // BEHIND_MAX_QUIET_PER_CHECK_MS + 1
    wm.arrived(now)
    assert not wm.check_idle(now + TIMEOUT_MS - 1)
    assert wm.check_idle(now + TIMEOUT_MS), "caught up (not behind): the plain idle timeout"


def test_only_an_idle_partition_adopts_the_clock_and_never_moves_back():
    wm = Watermark(TIMEOUT_MS)
    wm.observe(EVENT_MS, WALL_MS)
    assert not wm.adopt(EVENT_MS + 10_000), "an active partition keeps its own event time"
    assert wm.check_idle(WALL_MS + TIMEOUT_MS)
    assert wm.adopt(EVENT_MS + 10_000)
    assert wm.value == EVENT_MS + 10_000
    assert not wm.adopt(EVENT_MS + 5_000)
    assert wm.value == EVENT_MS + 10_000
    wm.observe(EVENT_MS + 7_000, WALL_MS + 2 * TIMEOUT_MS)  # records again: active, the adopted time stays
    assert not wm.idle
    assert wm.value == EVENT_MS + 10_000


def test_an_idle_partition_with_records_waiting_is_no_longer_idle():
    """Idle for long (a worker started before the replay), then its first records are fetched
    but not yet processed: adopting the clock now would make them late."""
    wm = Watermark(TIMEOUT_MS)
    assert not wm.check_idle(WALL_MS)
    assert wm.check_idle(WALL_MS + 10 * TIMEOUT_MS)
    assert not wm.check_idle(WALL_MS + 10 * TIMEOUT_MS + 1000, behind=True)
    assert not wm.adopt(EVENT_MS)
    assert wm.value == 0
