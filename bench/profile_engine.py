"""cProfile of the in-process path (partition engines + merger, no Faust, no Kafka).

    .venv/bin/python bench/profile_engine.py [--events N] [--rate EV_PER_S] [--seed S] [--out FILE.prof]
    .venv/bin/python bench/profile_engine.py --live --events 240000 --rate 2000
    .venv/bin/python bench/profile_engine.py --cold-ab --events 1000000
    .venv/bin/python bench/profile_engine.py --state-writes --events 1500000 --rate 5000
    .venv/bin/python bench/profile_engine.py --memory-soak --events 5000000

Generates N events (default 200k) as bench/throughput.py does, runs them once through
`_harness.InProcessPipeline` unprofiled (events/s and per-stage seconds), then again under
cProfile, and prints the top 25 functions by cumulative and by own (total) time, the own time
per module, and what the engines write back as state (`take_changes`) per event.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
import tracemalloc
from collections import Counter, defaultdict
from pathlib import Path

import _harness as h
import psutil

from shoppulse.agents.coldstore import RocksStore
from shoppulse.settings import Settings
from shoppulse.streams.cold import MemoryStore
from shoppulse.streams.engines import PartitionEngine
from shoppulse.streams.pipeline import Pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, metavar="N")
    parser.add_argument("--rate", type=float, default=1000.0, help="event-time rate of the generated timeline")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", metavar="FILE.prof", help="also save the profile")
    parser.add_argument("--memory", action="store_true", help="also a tracemalloc run: state held after N events")
    parser.add_argument(
        "--scaling",
        metavar="N1,N2,...",
        help="only: in-process events/s over the first N1, N2, ... events (3 runs each)",
    )
    parser.add_argument(
        "--largest", type=int, metavar="K", help="only: the K largest state records (engine and merge stage) by key"
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="only: events/s and stages with backlog batches against the live cadence (one batch "
        "per partition per second of event time, then a tick), and a profile of the live one",
    )
    parser.add_argument(
        "--cold-ab",
        action="store_true",
        help="only: events/s and Python heap with the cold state (streams/cold.py) in dicts and in "
        "the worker's RocksDB store, 3 runs each, interleaved",
    )
    parser.add_argument(
        "--state-writes",
        action="store_true",
        help="only: the state written back at the live cadence with event time as the wall clock "
        "(open snapshots due by event time), per minute of event time: bytes by key kind and the "
        "seconds spent taking changes and snapshots",
    )
    parser.add_argument(
        "--memory-soak",
        action="store_true",
        help="only: with the worker's RocksDB cold store, at every 10 %% of the events: the process's "
        "RSS, the Python heap the pipeline holds, RocksDB's memory, and the state's sizes; then "
        "the allocation sites that grew over the last half (a soak's growth, broken down)",
    )
    args = parser.parse_args()
    if args.memory_soak:
        memory_soak(args)
        return
    if args.cold_ab:
        cold_ab(args)
        return
    if args.live:
        live(args)
        return
    if args.state_writes:
        state_writes(args)
        return
    if args.largest:
        largest(args)
        return
    if args.scaling:
        sizes = [int(x) for x in args.scaling.split(",")]
        print(f"load average {h.load_average()}; code {h.code_version()}")
        records, _events, _start = h.generate(max(sizes), rate=args.rate, seed=args.seed)
        for size in sizes:
            rates = []
            for _ in range(3):
                pipeline = h.InProcessPipeline()
                started = time.perf_counter()
                pipeline.run(records[:size])
                rates.append(size / (time.perf_counter() - started))
            engines = [e for source in pipeline.sources.values() for e in source.engines.values()]
            open_sessions = sum(len(getattr(e, "sessions", ())) for e in engines)
            print(
                f"{size:>9,} events: {h.median_range(rates)} events/s; open sessions at the end {open_sessions:,}; "
                f"load {h.load_average()}"
            )
        return

    print(f"load average {h.load_average()}; code {h.code_version()}")
    started = time.perf_counter()
    records, _events, _start = h.generate(args.events, rate=args.rate, seed=args.seed)
    print(f"generated {len(records):,} events in {time.perf_counter() - started:.1f} s")

    # Unprofiled, with the state written back counted by kind and size.
    writes: Counter = Counter()
    written: Counter = Counter()
    original = PartitionEngine.take_changes

    def counting(self):
        changes = original(self)
        for key, value in changes.items():
            kind = key.split("|", 1)[0]
            writes[kind] += 1
            written[kind] += len(value or b"")
        return changes

    PartitionEngine.take_changes = counting
    try:
        pipeline = h.InProcessPipeline()
        started = time.perf_counter()
        pipeline.run(records)
        seconds = time.perf_counter() - started
    finally:
        PartitionEngine.take_changes = original
    n = len(records)
    print(
        f"unprofiled: {n / seconds:,.0f} events/s ({seconds:.2f} s); stages (s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in pipeline.seconds.items())
    )
    print(f"counts: {dict(pipeline.counts)}")
    print("engine state written back per event (a changelogged table write each, in the worker):")
    for kind, count in writes.most_common():
        print(
            f"  {kind:5} {count / n:6.3f} writes/event, {written[kind] / count:9.0f} B mean, "
            f"{written[kind] / n:7.1f} B/event"
        )
    print(
        f"  total {sum(writes.values()) / n:6.3f} writes/event, {sum(written.values()) / n:7.1f} B/event "
        f"(input: {sum(len(r[3]) for r in records) / n:.0f} B/event)"
    )

    profiler = cProfile.Profile()
    pipeline = h.InProcessPipeline()
    started = time.perf_counter()
    profiler.enable()
    pipeline.run(records)
    profiler.disable()
    print(f"\nprofiled run: {time.perf_counter() - started:.2f} s (cProfile overhead included)")
    if args.out:
        profiler.dump_stats(args.out)
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs()
        stats.sort_stats(order).print_stats(args.top)
        text = out.getvalue()
        print(f"\n=== top {args.top} by {order} ===")
        print(text[text.index("   ncalls") :].rstrip())
    if args.memory:
        memory(records)
    print("\n=== own time by module ===")
    rows = h.tottime_by_package(pstats.Stats(profiler))
    total = sum(r[1] for r in rows)
    for name, own, calls in rows[:20]:
        print(f"{name:60} {own:7.2f} s {100 * own / total:5.1f} % {calls:>10,} calls")


def state_writes(args) -> None:
    """What a live worker's checkpoints write, minute by minute: each second of event time is one
    batch per stream and partition and then the 1-second tick, whose clock is the event time, so
    open windows' snapshots (and the folds of their deltas) are due as under live traffic."""
    print(f"load average {h.load_average()}; code {h.code_version()}")
    records, events, start_ms = h.generate(args.events, rate=args.rate, seed=args.seed)
    timestamps = [event.ts for _, event in events]
    del events
    print(f"{len(records):,} events over {(timestamps[-1] - timestamps[0]) / 1000:.0f} s of event time")
    minute = [0]  # the minute of event time being fed
    written: dict[int, Counter] = defaultdict(Counter)  # minute -> key kind -> bytes
    taken: Counter = Counter()  # minute -> seconds in take_changes and take_outbox
    take_changes, take_outbox = PartitionEngine.take_changes, PartitionEngine.take_outbox

    def counted_changes(self):
        started = time.perf_counter()
        changes = take_changes(self)
        taken[minute[0]] += time.perf_counter() - started
        for key, value in changes.items():
            written[minute[0]][key.split("|", 1)[0]] += len(key) + len(value or b"")
        return changes

    def counted_outbox(self, open_at_ms=None):
        started = time.perf_counter()
        out = take_outbox(self, open_at_ms)
        taken[minute[0]] += time.perf_counter() - started
        return out

    PartitionEngine.take_changes, PartitionEngine.take_outbox = counted_changes, counted_outbox  # type: ignore[method-assign]
    try:
        pipeline = Pipeline(Settings())
        started = time.perf_counter()
        for second, groups in h.live_seconds(records, timestamps):
            minute[0] = (second * 1000 - start_ms) // 60_000
            for (stream, partition), raws in groups.items():
                pipeline.feed(stream, partition, raws, second * 1000)
            pipeline.tick(second * 1000)
        seconds = time.perf_counter() - started
    finally:
        PartitionEngine.take_changes, PartitionEngine.take_outbox = take_changes, take_outbox  # type: ignore[method-assign]
    print(f"{len(records) / seconds:,.0f} events/s in-process; state written per second of event time, by minute:")
    kinds = sorted({kind for counts in written.values() for kind in counts})
    print("  minute  " + " ".join(f"{kind + ' KB/s':>10}" for kind in kinds) + "   total KB/s  take ms/s")
    for m in sorted(written):
        counts = written[m]
        print(
            f"  {m:6}  "
            + " ".join(f"{counts[kind] / 60 / 1000:10.1f}" for kind in kinds)
            + f"   {sum(counts.values()) / 60 / 1000:10.1f}  {taken[m] / 60 * 1000:9.1f}"
        )
    total = sum(sum(c.values()) for c in written.values())
    print(f"  all: {total / 1e6:.1f} MB ({total / len(records):.0f} B/event), take {sum(taken.values()):.1f} s")


def live(args) -> None:
    """What live traffic costs the core beyond a backlog: the same events, fed in backlog batches
    and at the live cadence (`InProcessPipeline.run_live`), 3 runs each, interleaved."""
    print(f"load average {h.load_average()}; code {h.code_version()}")
    records, events, _start = h.generate(args.events, rate=args.rate, seed=args.seed)
    timestamps = [event.ts for _, event in events]
    del events
    span = (timestamps[-1] - timestamps[0]) / 1000
    print(f"{len(records):,} events over {span:.0f} s of event time ({args.rate:g} ev/s)")
    runs: dict[str, list] = {"backlog": [], "live": []}
    for _ in range(3):
        for cadence in runs:
            pipeline = h.InProcessPipeline()
            started = time.perf_counter()
            if cadence == "live":
                pipeline.run_live(records, timestamps)
            else:
                pipeline.run(records)
            runs[cadence].append((len(records) / (time.perf_counter() - started), dict(pipeline.seconds)))
    for cadence, results in runs.items():
        rates = [r for r, _ in results]
        stages = results[rates.index(h.median(rates))][1]
        print(
            f"{cadence:8} {h.median_range(rates)} events/s; CPU per second of traffic at {args.rate:g} ev/s: "
            f"{args.rate / h.median(rates):.2f} s; stages of the median run (s): "
            + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
        )
    profiler = cProfile.Profile()
    pipeline = h.InProcessPipeline()
    profiler.enable()
    pipeline.run_live(records, timestamps)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative").print_stats(args.top)
    text = out.getvalue()
    print(f"\n=== live cadence: top {args.top} by cumulative ===")
    print(text[text.index("   ncalls") :].rstrip())


def largest(args) -> None:
    """The largest value each state key reached (one changelog record each in the worker; Kafka's
    default limit is 1 MiB). Run with enough events to close a 1 h window (at --rate 1000 about
    3.7 M) to see the final merged records of a full hour."""
    from shoppulse.streams.merge import Merger

    print(f"load average {h.load_average()}; code {h.code_version()}")
    biggest: dict[tuple[str, str], int] = {}

    def recording(cls, stage):
        original = cls.take_changes

        def take_changes(self):
            changes = original(self)
            for key, value in changes.items():
                if value and len(value) > biggest.get((stage, key), 0):
                    biggest[(stage, key)] = len(value)
            return changes

        cls.take_changes = take_changes

    recording(PartitionEngine, "engine")
    recording(Merger, "merge")
    started = time.perf_counter()
    records, _events, start_ms = h.generate(args.events, rate=args.rate, seed=args.seed)
    del _events
    pipeline = h.InProcessPipeline()
    pipeline.run(records)
    finals = sorted(key for stage, key in biggest if key.startswith("f|") and f"|{h.HOUR_MS}|" in key)
    print(
        f"{len(records):,} events from {start_ms} (14:00 UTC on a past day), {time.perf_counter() - started:.0f} s; "
        f"final 1 h windows: {finals or 'none'}"
    )
    print(f"largest record of each kind (harness): {pipeline.max_bytes}")
    for (stage, key), size in sorted(biggest.items(), key=lambda x: -x[1])[: args.largest]:
        flag = "  ** over 1 MiB **" if size > 1_048_576 else ""
        print(f"  {size:>10,} B  {stage:6} {key}{flag}")


def cold_ab(args) -> None:
    """The cold state's store, A/B: `MemoryStore` against `RocksStore` (agents/coldstore.py), the
    same events; then the Python heap each leaves held (RocksDB's own memory is not Python heap:
    bench/throughput.py reports the worker's RSS)."""
    print(f"load average {h.load_average()}; code {h.code_version()}")
    records, _events, _start = h.generate(args.events, rate=args.rate, seed=args.seed)
    print(f"{len(records):,} events ({args.rate:g} ev/s of event time)")
    with tempfile.TemporaryDirectory(prefix="shoppulse-cold-") as tmp:
        stores = {"memory": MemoryStore, "rocksdb": lambda: RocksStore(Path(tmp) / "cold-state")}
        rates: dict[str, list[float]] = {kind: [] for kind in stores}
        for _ in range(3):
            for kind, make in stores.items():
                store = make()
                pipeline = h.InProcessPipeline(cold=store)
                started = time.perf_counter()
                pipeline.run(records)
                rates[kind].append(len(records) / (time.perf_counter() - started))
                if isinstance(store, RocksStore):
                    store.close()
                del pipeline, store
        for kind, values in rates.items():
            print(f"{kind:8} {h.median_range(values)} events/s")
        print(f"rocksdb / memory: {h.median(rates['rocksdb']) / h.median(rates['memory']):.3f}")
        for kind, make in stores.items():
            store = make()
            tracemalloc.start(1)
            pipeline = h.InProcessPipeline(cold=store)
            pipeline.run(records)
            current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            ids = state_sizes(pipeline)["dedup ids"]
            print(f"{kind:8} Python heap held {current / 2**20:.0f} MB, peak {peak / 2**20:.0f} MB ({ids:,} dedup ids)")
            if isinstance(store, RocksStore):
                store.close()
            del pipeline, store


def state_sizes(pipeline: h.InProcessPipeline) -> dict[str, int]:
    """How much state the pipeline holds: open sessions, dedup ids, visitors and customers seen,
    open windows, and the merger's pending and final windows."""
    engines = [e for source in pipeline.sources.values() for e in source.engines.values()]
    merger = pipeline.merge.merger
    return {
        "sessions": sum(len(getattr(e, "sessions", ())) for e in engines),
        "dedup ids": sum(len(e.event_ids) for e in engines),
        "seen keys": sum(len(getattr(e, "seen_visitors", ())) + len(getattr(e, "seen_customers", ())) for e in engines),
        "windows": sum(len(e.windows) for e in engines),
        "merger windows": len(merger.pending) + len(merger.finals),
    }


def print_sites(diff: list[tracemalloc.StatisticDiff], top: int) -> None:
    """The allocation sites that grew most, with paths relative to the project."""
    root = str(Path(__file__).resolve().parent.parent) + "/"
    for stat in diff[:top]:
        frame = stat.traceback[0]
        print(
            f"  {stat.size_diff / 2**20:+7.1f} MB {stat.count_diff:>+10,} blocks  {frame.filename.removeprefix(root)}:{frame.lineno}"
        )


ROCKSDB_MEMORY = (
    "rocksdb.cur-size-all-mem-tables",
    "rocksdb.estimate-table-readers-mem",
    "rocksdb.block-cache-usage",
)


def memory_soak(args) -> None:
    """Where a soak's memory goes: bench/throughput.py measures the worker's RSS over a run, this
    splits the same growth (in-process, same events, the worker's cold store) into the Python heap
    the pipeline holds (tracemalloc, from after the events were generated), RocksDB's own memory,
    and the rest of the RSS (allocator pages not given back, native libraries). The RSS column
    leaves out tracemalloc's own memory, which a worker does not have."""
    print(f"load average {h.load_average()}; code {h.code_version()}")
    records, _events, _start = h.generate(args.events, rate=args.rate, seed=args.seed)
    del _events
    n = len(records)
    print(f"{n:,} events ({args.rate:g} ev/s of event time)")
    me = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="shoppulse-cold-") as tmp:
        store = RocksStore(Path(tmp) / "cold-state")
        tracemalloc.start(1)
        base_rss = me.memory_info().rss
        pipeline = h.InProcessPipeline(cold=store)
        print(
            f"{'events':>6} {'RSS +MB':>8} {'heap MB':>8} {'rocks MB':>9} {'other MB':>9}  "
            + "  ".join(state_sizes(pipeline))
        )
        snapshots = {}
        step = n // 10
        for decile in range(1, 11):
            pipeline.run(records[(decile - 1) * step : n if decile == 10 else decile * step])
            # tracemalloc's own traces are in the RSS too: not the worker's, so left out.
            rss = me.memory_info().rss - base_rss - tracemalloc.get_tracemalloc_memory()
            heap = tracemalloc.get_traced_memory()[0]
            rocks = sum(store.db.property_int_value(name) or 0 for name in ROCKSDB_MEMORY)
            sizes = "  ".join(f"{value:>{len(name)},}" for name, value in state_sizes(pipeline).items())
            print(
                f"{decile * 10:>5}% {rss / 2**20:8.0f} {heap / 2**20:8.0f} {rocks / 2**20:9.0f} "
                f"{(rss - heap - rocks) / 2**20:9.0f}  {sizes}"
            )
            if decile in (5, 10):
                snapshots[decile] = tracemalloc.take_snapshot()
        tracemalloc.stop()
        print("\nPython heap grown from 50 % to 100 % of the events, by allocation site:")
        print_sites(snapshots[10].compare_to(snapshots[5], "lineno"), 15)
        store.close()


def memory(records) -> None:
    """Python heap held by the engines and the merger after all events, by allocation site."""
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    pipeline = h.InProcessPipeline()
    pipeline.run(records)
    current, peak = tracemalloc.get_traced_memory()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    n = len(records)
    sizes = ", ".join(f"{name} {value:,}" for name, value in state_sizes(pipeline).items())
    print(f"\n=== memory (tracemalloc) after {n:,} events ===")
    print(f"held {current / 2**20:.0f} MB ({current / n:.0f} B/event), peak {peak / 2**20:.0f} MB; {sizes}")
    print_sites(after.compare_to(before, "lineno"), 12)


if __name__ == "__main__":
    main()
