"""The merge stage: partition snapshots and progress in, final window results out (2 partitions,
1 minute windows)."""

from __future__ import annotations

import orjson
from core_events import MINUTE, T0, at, settings

from shoppulse.streams.measures import Measures
from shoppulse.streams.merge import Merger
from shoppulse.streams.partials import Progress, Snapshot, decode_partial


def merger() -> Merger:
    return Merger(settings(windows_seconds=(60,)))


def sales(partition: int, orders: int, start_s: float = 0, **measures) -> Snapshot:
    return Snapshot("sales", MINUTE, at(start_s), partition, Measures(orders=orders, **measures))


def progress(family: str, partition: int, through_s: float, **fields) -> Progress:
    return Progress(family, partition, at(through_s), **fields)


def apply(m: Merger, *messages):
    results = []
    for message in messages:
        results += m.apply(message)
    return results


def plain(result) -> dict:
    """The result's KPI values without dimensions."""
    return {v.kpi: v.value for v in result.values if not v.dimensions}


def test_a_window_is_the_sum_of_its_partitions():
    m = merger()
    results = apply(m, sales(0, 2), sales(1, 3), progress("sales", 0, 60), progress("sales", 1, 60))
    [result] = results
    assert (result.family, result.start_ms, result.size_ms, result.final) == ("sales", T0, MINUTE, True)
    assert plain(result)["orders"] == 5


def test_a_later_snapshot_of_a_partition_replaces_its_earlier_one():
    m = merger()
    results = apply(m, sales(0, 2), sales(1, 3), sales(0, 4), progress("sales", 0, 60), progress("sales", 1, 60))
    assert plain(results[0])["orders"] == 7


def test_final_only_once_every_partition_has_progressed_past_the_end():
    m = merger()
    assert apply(m, sales(0, 2), sales(1, 3), progress("sales", 0, 60)) == []
    [update] = m.open_updates()
    assert (update.final, plain(update)["orders"]) == (False, 5)
    short = apply(m, progress("sales", 1, 59))  # partition 1 is 1 s short of the window's end
    assert [r.start_ms for r in short] == [at(-60)], "only the minute before, as zeros"
    [result] = apply(m, progress("sales", 1, 60))
    assert (result.final, plain(result)["orders"]) == (True, 5)


def test_windows_no_partition_had_data_for_are_emitted_as_zeros():
    m = merger()
    apply(m, sales(0, 2), progress("sales", 0, 60), progress("sales", 1, 60))
    # Partition 0 is at 3 min, partition 1 at 2 min 30 s: only the second minute is final everywhere.
    results = apply(m, progress("sales", 0, 180), progress("sales", 1, 150))
    assert [(r.start_ms, r.final, plain(r)["orders"]) for r in results] == [(at(60), True, 0)]
    results = apply(m, progress("sales", 1, 180))
    assert [(r.start_ms, plain(r)["orders"]) for r in results] == [(at(120), 0)]


def test_cross_kpis_once_both_families_of_the_window_are_final():
    m = merger()
    visits = Measures()
    for visitor in ("a", "b", "c", "d"):
        visits.distinct("visitors").add(visitor)
    apply(m, sales(0, 1, revenue_micros={"EUR": 30_000_000}), progress("sales", 0, 60), progress("sales", 1, 60))
    results = apply(
        m, Snapshot("traffic", MINUTE, T0, 1, visits), progress("traffic", 0, 60), progress("traffic", 1, 60)
    )
    [cross] = [r for r in results if r.family == "cross"]
    [value] = [v for v in cross.values if v.kpi == "revenue_per_visitor"]
    assert (value.dimensions, value.value) == ({"currency": "EUR"}, 7.5)  # 30 EUR / 4 visitors


def test_point_in_time_support_state_is_summed_at_the_window_end():
    m = merger()
    results = apply(
        m,
        progress("support", 0, 60, steps=[[1, 0, 0, None], [at(10) + 1, 1, 0, at(10)]]),
        # Partition 1's last step before the window end: 2 open, 1 in the backlog, oldest unanswered from 5 s.
        progress("support", 1, 60, steps=[[1, 0, 0, None], [at(20) + 1, 2, 1, at(5)], [at(60) + 1, 0, 0, None]]),
    )
    [result] = results
    assert (result.measures["open_tickets"], result.measures["backlog_tickets"]) == (3, 1)
    assert result.measures["max:oldest_unanswered_age_ms"] == 55_000  # the end at 60 s less 5 s


def test_a_re_sent_snapshot_or_progress_of_a_final_window_changes_nothing():
    m = merger()
    apply(m, sales(0, 2), sales(1, 3), progress("sales", 0, 60), progress("sales", 1, 60))
    assert apply(m, sales(0, 2), progress("sales", 0, 60), progress("sales", 1, 60)) == []
    assert m.pending == {} and m.open_updates() == []


def test_restore_from_the_written_changes_goes_on_as_without_the_restart():
    first = [sales(0, 2), sales(1, 3), progress("sales", 0, 60), sales(0, 1, 60), sales(1, 9, 60)]
    rest = [progress("sales", 1, 60), progress("sales", 0, 120), progress("sales", 1, 120)]
    uninterrupted = merger()
    expected = apply(uninterrupted, *first, *rest)
    m, store = merger(), {}
    apply(m, *first)
    for key, value in m.take_changes().items():
        if value is not None:
            store[key] = value
    again = merger()
    again.restore(store.items())
    assert (again.progress, again.emitted, again.pending.keys()) == (m.progress, m.emitted, m.pending.keys())
    results = apply(again, *rest)
    assert [(r.start_ms, plain(r)["orders"]) for r in results] == [(at(0), 5), (at(60), 10)]
    assert [(r.start_ms, r.values) for r in results] == [(r.start_ms, r.values) for r in expected]


def test_merge_state_keeps_each_snapshot_as_received_and_reads_the_older_measures_only_form():
    m = merger()
    received = Snapshot("sales", MINUTE, at(0), 0, Measures(orders=2)).to_bytes()
    m.apply(decode_partial(received))
    written = {k: v for k, v in m.take_changes().items() if k.startswith("w|")}
    assert list(written.values()) == [received]  # not encoded again
    older = {k: orjson.dumps({"orders": 2}) for k in written}  # the state's form before it
    for rows in (written, older):
        again = merger()
        again.restore(rows.items())
        results = apply(again, sales(1, 3), progress("sales", 0, 60), progress("sales", 1, 60))
        assert plain(results[0])["orders"] == 5
