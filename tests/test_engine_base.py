"""The partition engine's shared mechanics: watermark, late events, dedup, closing, snapshots,
progress and the state written back, on an engine that only counts events per window."""

from __future__ import annotations

import inspect

from core_events import MINUTE, T0, WALL_MS, at, finals, marks, order, persist, restored, settings, state_of

from shoppulse.streams.engines import PartitionEngine
from shoppulse.streams.partials import Snapshot


class CountingEngine(PartitionEngine):
    stream = "orders"
    families = ("count",)

    def on_event(self, parsed, result):
        for measures in self.measures_for("count", parsed.ts_ms):
            measures.inc("events")


def engine() -> CountingEngine:
    return CountingEngine(0, settings())


def test_watermark_is_the_largest_event_time_accepted():
    e = engine()
    e.process([order("order_placed", 5), order("order_placed", 3), order("order_placed", 8)], WALL_MS)
    assert e.watermark.value == at(8)


def test_late_event_is_reported_with_its_index_and_not_counted():
    e = engine()
    e.process([order("order_placed", 1)], WALL_MS)
    # 75 s: the first minute ended at 60 s, and 60 s + 10 s grace <= 75 s, so an event at 30 s is late.
    result = e.process([order("order_placed", 75), order("order_placed", 30)], WALL_MS)
    assert (result.accepted, len(result.late)) == (1, 1)
    late, index = result.late[0]
    assert (late.ts_ms, index) == (at(30), 1)
    assert finals(e.take_outbox(), "count") == {0: {"events": 1}}


def test_an_event_inside_the_grace_period_is_still_counted():
    e = engine()
    result = e.process([order("order_placed", 65), order("order_placed", 59)], WALL_MS)
    assert (result.accepted, result.late) == (2, [])


def test_duplicates_are_dropped_until_the_dedup_horizon_passes():
    e = engine()
    first = e.process([order("order_placed", 0, event_id="a"), order("order_placed", 1, event_id="a")], WALL_MS)
    again = e.process([order("order_placed", 2, event_id="a")], WALL_MS)
    assert (first.accepted, first.duplicates, again.accepted, again.duplicates) == (1, 1, 0, 1)
    # The horizon is 120 s: once the watermark is past 1 s + 120 s (the batch's latest event), "a" is forgotten.
    e.process([order("order_placed", 122)], WALL_MS)
    later = e.process([order("order_placed", 125, event_id="a")], WALL_MS)
    assert (later.accepted, later.duplicates) == (1, 0)


def test_windows_close_once_the_watermark_passes_their_end_plus_grace():
    e = engine()
    e.process([order("order_placed", s) for s in (10, 20, 69)], WALL_MS)
    assert finals(e.take_outbox(), "count") == {}, "69 s < 60 s end + 10 s grace: nothing is final yet"
    e.process([order("order_placed", 130)], WALL_MS)
    out = e.take_outbox()
    # Through 130 - 10 = 120 s: both of the first two minutes, each once, with what each holds.
    assert finals(out, "count") == {0: {"events": 2}, 60: {"events": 1}}
    assert finals(out, "count", 5 * MINUTE) == {}, "the 5 minute window is still open"
    assert marks(out, "count")[-1] == (at(59), at(120))
    assert set(e.windows) == {("count", MINUTE, at(120)), ("count", 5 * MINUTE, T0)}


def test_progress_promises_every_window_ending_by_the_watermark_less_grace():
    e = engine()
    e.process([order("order_placed", 50)], WALL_MS)
    assert marks(e.take_outbox(), "count") == [(0, at(40))]
    e.process([order("order_placed", 90)], WALL_MS)
    assert marks(e.take_outbox(), "count") == [(at(40), at(80))]
    e.process([order("order_placed", 85)], WALL_MS)  # older than the watermark: no progress
    assert marks(e.take_outbox(), "count") == []


def test_finals_are_flagged_waiting_from_the_window_end_until_the_outbox_is_taken():
    e = engine()
    e.process([order("order_placed", 10)], WALL_MS)
    e.take_outbox()
    e.process([order("order_placed", 69)], WALL_MS)
    assert not e.finals_waiting, "progress through 59 s: no window ended"
    e.process([order("order_placed", 75)], WALL_MS)
    assert e.finals_waiting, "progress through 65 s: the first minute is final"
    e.take_outbox()
    assert not e.finals_waiting


def test_open_window_snapshots_only_for_windows_changed_since_the_last_call():
    e = engine()
    e.process([order("order_placed", 10), order("order_placed", 15)], WALL_MS)
    first = e.take_outbox(WALL_MS)
    assert finals(first, "count") == {0: {"events": 2}}
    assert finals(first, "count", 5 * MINUTE) == {0: {"events": 2}}
    assert [m for m in e.take_outbox(WALL_MS + 60_000) if isinstance(m, Snapshot)] == []
    e.process([order("order_placed", 20)], WALL_MS)
    assert finals(e.take_outbox(WALL_MS + 120_000), "count") == {0: {"events": 3}}


def test_open_window_snapshots_of_each_size_at_most_60_times_per_window_length():
    e = engine()  # 1 and 5 minute windows: snapshots at most every second and every 5 s
    sent = []
    for second in range(11):
        e.process([order("order_placed", second)], WALL_MS + second * 1000)
        snapshots = [m for m in e.take_outbox(WALL_MS + second * 1000) if isinstance(m, Snapshot)]
        sent.append(sorted(m.size_ms // 1000 for m in snapshots))
    assert sent == [[60, 300], [60], [60], [60], [60], [60, 300], [60], [60], [60], [60], [60, 300]]
    e.process([order("order_placed", 75)], WALL_MS + 11_500)
    out = e.take_outbox(None)
    assert finals(out, "count") == {0: {"events": 11}}, "a final goes out at once, due or not"


def test_an_open_snapshot_a_little_early_is_on_time():
    e = engine()
    e.process([order("order_placed", 1)], WALL_MS)
    e.take_outbox(WALL_MS)
    e.process([order("order_placed", 2)], WALL_MS)
    assert finals(e.take_outbox(WALL_MS + 990), "count") == {0: {"events": 2}}, "a timer 10 ms early"


def test_restore_from_the_written_changes_rebuilds_the_same_state():
    e, store = engine(), {}
    batches = [
        [order("order_placed", 1, event_id="a"), order("order_placed", 2, event_id="b")],
        [order("order_placed", 70, event_id="c"), order("order_placed", 65, event_id="d")],
        [order("order_placed", 200, event_id="e")],  # closes the first minutes, expires the first group
    ]
    for batch in batches:
        e.process(batch, WALL_MS)
        persist(e, store)
    copy = restored(e, store)
    assert state_of(copy) == state_of(e)
    assert "w|count|60000|" + str(T0) not in store, "a closed window's row is deleted"
    # Both go on alike: the same duplicates, late events and final windows.
    more = [order("order_placed", 201, event_id="e"), order("order_placed", 100), order("order_placed", 390)]
    for one in (e, copy):
        one.take_outbox()
    results = [one.process(list(more), WALL_MS) for one in (e, copy)]
    assert [(r.accepted, r.duplicates, len(r.late)) for r in results] == [(1, 1, 1)] * 2
    outs = [one.take_outbox() for one in (e, copy)]
    assert finals(outs[0], "count", 5 * MINUTE) == finals(outs[1], "count", 5 * MINUTE) == {0: {"events": 5}}
    assert marks(outs[0], "count") == marks(outs[1], "count")


def test_a_large_window_is_written_whole_once_per_open_snapshot_and_as_a_delta_between():
    """A 1 h window (snapshots once a minute) gets its whole row at each fold and only its delta at the
    checkpoints between; the written rows restore the same state at every checkpoint, and a restored
    engine's next snapshot and final are those of the engine that never stopped."""
    e, store = CountingEngine(0, settings(windows_seconds=(60, 3600))), {}
    hour_row, delta_row = f"w|count|3600000|{T0}", f"wd|count|3600000|{T0}"
    whole_writes = delta_writes = 0
    for second in range(0, 200, 2):
        e.process([order("order_placed", second), order("order_placed", second + 1)], WALL_MS + second * 1000)
        e.take_outbox(WALL_MS + second * 1000)  # the open snapshots that are due fold their windows
        changes = e.take_changes()
        whole_writes += hour_row in changes
        delta_writes += changes.get(delta_row) is not None
        for key, value in changes.items():
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
        assert state_of(restored(e, store)) == state_of(e), f"after {second} s"
    # 100 checkpoints; folds at 0, 60, 120 and 180 s, each written whole with no delta left.
    assert (whole_writes, delta_writes) == (4, 96)
    copy = restored(e, store)
    for one in (e, copy):
        one.process([order("order_placed", 3700)], WALL_MS + 300_000)  # the hour ends
    final, again = (finals(one.take_outbox(), "count", 3_600_000) for one in (e, copy))
    assert final == again == {0: {"events": 200}}
    persist(e, store)
    assert hour_row not in store and delta_row not in store, "a closed window's rows are deleted"


def test_the_clock_is_always_given_never_read():
    for method in (PartitionEngine.process, PartitionEngine.tick):
        assert inspect.signature(method).parameters["wall_ms"].default is inspect.Parameter.empty
