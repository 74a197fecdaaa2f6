"""Capacity of the one merger (issue 22, "One merger"): partials/s and measure entries/s.

    .venv/bin/python bench/merger.py [--events N] [--rate R] [--partitions 4,16,64] [--repeat 3]

Method:

1. **Partials from the real engines.** The first N events of the seeded `shoppulse generate`
   timeline (bench/_harness.py `generate`), all keyed to `--source-partitions` partitions
   (default 1, so each partition gets the whole generated rate), are fed to the core's
   `Pipeline` at the live cadence with the event time as the wall clock (`_harness.live_seconds`:
   each second of event time is one batch per stream and partition, then the 1-second tick), so
   every partition sends what a live worker sends: the snapshot of each open window that
   changed, of each size whose period is due (1 m every second, 5 m every 5 s, 1 h every
   minute), the closing snapshots and a `Progress` per family and second. Every partial that
   passes `Pipeline.on_partials` is recorded with its second of event time.
2. **Three catalogues.** `today`: the recorded partials as they are. `after`: the same, with the
   measures that issues 24 and 25 add emulated in every snapshot: labelled counters of capped
   cardinality and sketches, by family (`EXTRA`, printed at the start: which dimensions, which
   caps). Every label value is filled (a busy partition sees them all), and label values and
   counts are seeded. `busy`: `after`, with every distinct count (the visitors' theta sketches)
   merged with a full one, so it holds the 2**LG_K = 65,536 hashes it is trimmed to: what a
   partition of tens of thousands of events/s sends (hundreds of thousands of visitors a
   minute), while the generated rate here (about 800 events/s per partition) leaves them at a
   third of that. `busy-today` (not run by default): today's catalogue with those full distinct
   counts. The recording engines use a session timeout of `--session-timeout` (180 s;
   the default 1,800 s would need 30 min of event time before a session ends), so the
   sessions family's snapshots (windows whose sessions end) are in the timed span.
3. **P source partitions** (`--partitions`): the recorded partials of source partition
   `q % source_partitions`, relabelled as partition `q`, for q < P, second by second, over
   `--seconds` seconds of event time (after `--skip` seconds of ramp-up, and 5 untimed seconds
   that fill the merger's pending windows). So each of the P partitions sends what one real
   partition sends at the generated rate.
4. **The merge task's work, timed** (one CPython thread, as in agents/merge_task.py): per second,
   that second's partials into `MergeDriver.apply` in slices of `MergeTask.slice_size`, each
   slice's results made into kpi-results records (`outputs.kpi_results.records`) and the stream
   clocks read; then the checkpoint's `take_changes()` (it serialises every merge-state key the
   second changed: each partition's snapshot is written again) and the tick's `open_updates()`
   (each changed open window merged over all P partitions, its KPIs computed) with its records.
   Not timed: the transport (fetch, produce, transaction), the Prometheus exporter. Times are
   the process's CPU time (`time.process_time`), not the wall clock: on this shared machine the
   wall clock also counts the time other processes hold the core.
5. **Baseline in the same run:** `decode_partial` alone over the same partials. The machine is
   shared and noisy, so the merge time is also given as a ratio to it.
6. Each (catalogue, P) and its baseline run `--repeat` times, interleaved; medians (min–max).
   `busy` and `busy-today` run only at `--busy-partitions` (4,16): they are the slowest, and
   the cost is about linear in P.

A **measure entry** is one value inside a snapshot's `Measures` (streams/measures.py): an int
counter is 1 entry, a `dict[str, int]` is one entry per label value, and each sketch
(`Distinct`, `Quantiles`, `TopItems`) is 1 entry; the sketches' contents (theta hashes, DDSketch
bins, frequent items) are counted apart as "sketch items". `Progress` messages carry no measures.

From the figures: the merger's CPU seconds per second of live traffic at P partitions
(utilisation); it saturates at P / utilisation partitions (the cost grows about linearly with
P: each partition sends the same partials/s). Benchmarks print figures; they do not pass or fail.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from collections import Counter, defaultdict

import _harness as h  # also puts the repository on sys.path

from shoppulse.agents.merge_task import MergeTask
from shoppulse.outputs import kpi_results
from shoppulse.settings import Settings
from shoppulse.streams.measures import SKETCHES, Distinct, Measures, Quantiles, TopItems
from shoppulse.streams.partials import Snapshot, decode_partial
from shoppulse.streams.pipeline import MergeDriver, Pipeline

# The measures issues 24 and 25 add, emulated per family: (name, kind, label values or items).
# Kinds: "labels" a dict[str, int] with that many label values, "quantiles" a DDSketch per label
# value (fed 16 durations), "top" a TopItems with that many items, "count" an int counter.
# Caps: GA4's 19 default channel groups; 4 devices; the capped free-form dimensions (country,
# source, medium, campaign, agents, products) keep 32 values in state (a heavy-hitters
# structure keeps more than the top N = label_cap shown); 4 currencies; 4 priorities.
CHANNEL_GROUPS, DEVICES, CAPPED, LANDING, CURRENCIES, PRIORITIES = 19, 4, 32, 8, 4, 4
EXTRA: dict[str, list[tuple[str, str, int]]] = {
    # issue 24: sessions, conversion, add-to-cart, bounce and purchase revenue per channel
    # group, device, country, and the top source, medium, campaign and landing page type.
    "sessions": [
        (f"{measure}|{dim}", "labels", cap)
        for dim, cap in (
            ("channel", CHANNEL_GROUPS),
            ("device", DEVICES),
            ("country", CAPPED),
            ("source", CAPPED),
            ("medium", CAPPED // 2),
            ("campaign", CAPPED),
            ("landing", LANDING),
        )
        for measure in ("sessions", "converted_sessions", "cart_sessions", "bounced_sessions", "purchase_micros")
    ],
    # issue 24: per-product views, add-to-carts and purchases; the live snapshots' counters.
    "traffic": [
        ("product_views", "top", 200),
        ("product_carts", "top", 100),
        ("product_purchases", "top", 50),
        *((name, "count", 1) for name in ("active_5m", "active_30m", "open_sessions", "open_carts", "in_checkout")),
    ],
    # issue 25: the sales breakdown per currency, sales by channel and country, refunds and
    # cancellations by reason, customers (repeat, lifetime value, time to the second order).
    "sales": [
        *(
            (f"{m}_micros", "labels", CURRENCIES)
            for m in ("gross", "discounts", "returns", "net", "shipping", "taxes", "total")
        ),
        ("orders|channel", "labels", 8),
        ("net_micros|channel", "labels", 8 * CURRENCIES),
        ("orders|country", "labels", CAPPED),
        ("net_micros|country", "labels", CAPPED * CURRENCIES),
        ("refund_micros|reason", "labels", 8 * CURRENCIES),
        ("refunds|reason", "labels", 8),
        ("cancellations|reason", "labels", 8),
        ("repeat_customers", "count", 1),
        ("customers_ordered", "count", 1),
        ("clv", "quantiles", 1),
        ("days_to_second_order", "quantiles", 1),
    ],
    # issue 25: resolution and reply times, touches, backlog by age, SLA targets per priority,
    # per agent (top 32 in state), CSAT offered.
    "support": [
        *((name, "quantiles", 1) for name in ("full_resolution", "first_resolution", "next_reply", "requester_wait")),
        ("next_reply|priority", "quantiles", PRIORITIES),
        ("full_resolution|priority", "quantiles", PRIORITIES),
        ("touches", "labels", 3),
        ("backlog_by_age", "labels", 4),
        ("sla_achieved", "labels", 3 * PRIORITIES),
        ("sla_breached", "labels", 3 * PRIORITIES),
        *((f"{m}|agent", "labels", CAPPED) for m in ("solves", "first_replies", "frt_sum_ms", "csat_good", "csat_bad")),
        ("frt|agent", "quantiles", CAPPED),
        ("surveys_offered", "count", 1),
    ],
}

PARTITION = re.compile(rb'"partition":(\d+),')
FAMILY = re.compile(rb'"family":"(\w+)"')


def family_of(value: bytes) -> str:
    match = FAMILY.search(value)
    return match.group(1).decode() if match else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=260_000, help="generated events (default 260,000)")
    parser.add_argument("--rate", type=float, default=1000, help="events/s of event time generated (default 1,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--source-partitions", type=int, default=1, help="partitions the events are keyed to (default 1)"
    )
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=180,
        help="session timeout of the recording engines, s (default 180: sessions end within the run)",
    )
    parser.add_argument("--partitions", default="4,16,64", help="P, the merger's source partitions (default 4,16,64)")
    parser.add_argument(
        "--busy-partitions", default="4,16", help="P for the busy catalogue (the slowest; default 4,16)"
    )
    parser.add_argument("--seconds", type=int, default=20, help="seconds of event time fed to the merger (default 20)")
    parser.add_argument(
        "--skip", type=int, default=280, help="seconds of ramp-up skipped: sessions start to end (default 280)"
    )
    parser.add_argument(
        "--catalogues",
        default="today,after,busy",
        help="of today, after, busy (after, with every distinct count at its sketch's cap: a partition "
        "of tens of thousands of events/s), busy-today (today, with those distinct counts); "
        "default today,after,busy",
    )
    parser.add_argument(
        "--shards",
        default="",
        help="also run each of these families alone (comma-separated, e.g. traffic,sessions,sales,support): "
        "what one merger of a merge stage sharded by family would do",
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    counts = [int(p) for p in args.partitions.split(",")]
    busy_counts = [int(p) for p in args.busy_partitions.split(",")]

    print(f"load average {h.load_average()}; code {h.code_version()}")
    started = time.perf_counter()
    records, events, _start = h.generate(args.events, rate=args.rate, seed=args.seed, partitions=args.source_partitions)
    timestamps = [event.ts for _, event in events]
    del events
    span = (timestamps[-1] - timestamps[0]) / 1000
    per_partition = len(records) / span / args.source_partitions
    print(
        f"{len(records):,} events over {span:.0f} s of event time on {args.source_partitions} source partition(s): "
        f"{per_partition:,.0f} events/s per partition (generated in {time.perf_counter() - started:.0f} s)"
    )
    settings = Settings(partitions=args.source_partitions, session_timeout_seconds=args.session_timeout)
    recorded = record_partials(records, timestamps, settings)
    del records, timestamps
    seconds = sorted(recorded)
    first = seconds[0] + args.skip
    timed = [s for s in range(first, first + args.seconds)]
    if timed[-1] > seconds[-1]:
        raise SystemExit(f"only {seconds[-1] - seconds[0]} s of event time recorded; lower --skip/--seconds")
    warm = list(range(first - 5, first))
    rng = random.Random(args.seed)
    wanted = args.catalogues.split(",")
    catalogues = {"today": recorded}
    if "after" in wanted:
        catalogues["after"] = {s: [with_extras(v, rng) for v in recorded[s]] for s in warm + timed}
    if "busy" in wanted or "busy-today" in wanted:
        full = Distinct()
        for i in range(2 * 2**Distinct.LG_K):
            full.add(f"busy-{i}")
        if "busy" in wanted:
            catalogues["busy"] = {s: [with_extras(v, rng, full) for v in recorded[s]] for s in warm + timed}
        if "busy-today" in wanted:
            catalogues["busy-today"] = {
                s: [with_extras(v, rng, full, extra={}) for v in recorded[s]] for s in warm + timed
            }
    catalogues = {name: catalogues[name] for name in wanted}
    print_extras()
    describe(catalogues, timed, args.source_partitions)

    runs: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for repeat in range(args.repeat):
        for catalogue, partials in catalogues.items():
            for count in busy_counts if catalogue.startswith("busy") else counts:
                feed = {s: relabel(partials.get(s, []), count, args.source_partitions) for s in warm + timed}
                run = merge_run(feed, warm, timed, count)
                run["decode"] = decode_run(feed, timed)
                runs[(catalogue, count)].append(run)
                print(
                    f"  repeat {repeat + 1} {catalogue:5} P={count:3}: merge task {run['total']:.2f} CPU s, "
                    f"decode {run['decode']:.2f} s for {args.seconds} s of traffic ({h.load_average()})"
                )
                for family in filter(None, args.shards.split(",")):
                    shard = {s: [v for v in values if family_of(v) == family] for s, values in feed.items()}
                    run = merge_run(shard, warm, timed, count)
                    run["decode"] = decode_run(shard, timed)
                    run["shard of"] = catalogue
                    runs[(f"{catalogue}/{family}", count)].append(run)
    report(runs, args.seconds, per_partition)


def record_partials(records, timestamps, settings: Settings) -> dict[int, list[bytes]]:
    """Every partial the engines send, by second of event time, at the live cadence."""
    recorded: dict[int, list[bytes]] = defaultdict(list)
    now = [0]

    class Recording(Pipeline):
        def on_partials(self, partials):
            recorded[now[0]].extend(value for _, value in partials)
            super().on_partials(partials)

    pipeline = Recording(settings)
    started = time.perf_counter()
    for second, groups in h.live_seconds(records, timestamps):
        now[0] = second
        for (stream, partition), raws in groups.items():
            pipeline.feed(stream, partition, raws, second * 1000)
        pipeline.tick(second * 1000)
    print(f"engines fed at the live cadence in {time.perf_counter() - started:.0f} s")
    return dict(recorded)


def with_extras(
    value: bytes, rng: random.Random, full: Distinct | None = None, extra: dict[str, list] | None = None
) -> bytes:
    """The partial with the measures of issues 24 and 25 added (`extra`, default `EXTRA`), if it is a
    snapshot; with `full`, its distinct counts also merged with it (filled to the sketch's 2**LG_K
    hashes)."""
    message = decode_partial(value)
    if not isinstance(message, Snapshot):
        return value
    measures = message.measures
    if full is not None:
        for distinct in [v for v in measures.values() if isinstance(v, Distinct)]:
            distinct.merge(full)
    for name, kind, size in (EXTRA if extra is None else extra).get(message.family, []):
        if kind == "count":
            measures[name] = rng.randrange(1, 1000)
        elif kind == "labels":
            measures[name] = {f"v{i}": rng.randrange(1, 10_000) for i in range(size)}
        elif kind == "quantiles":
            for i in range(size):
                quantiles = measures.quantiles(f"{name}={i}" if size > 1 else name)
                for _ in range(16):
                    quantiles.add(rng.lognormvariate(12, 2))
        else:
            top = measures.top_items(name)
            for _ in range(size):
                top.add(f"p{rng.randrange(10 * size)}", rng.randrange(1, 50))
    return message.to_bytes()


def relabel(partials: list[bytes], count: int, source_partitions: int) -> list[bytes]:
    """A second's partials of P = `count` partitions: those of partition q % source_partitions as q's."""
    out = []
    for q in range(count):
        source = q % source_partitions
        for value in partials:
            match = PARTITION.search(value)
            if match is None or int(match.group(1)) != source:
                continue
            out.append(value if q == source else PARTITION.sub(b'"partition":%d,' % q, value, count=1))
    return out


def merge_run(feed: dict[int, list[bytes]], warm: list[int], timed: list[int], count: int) -> dict:
    """The merge task's work over `timed` seconds, after the untimed `warm` ones."""
    settings = Settings(partitions=count)
    topic = settings.topics.results
    driver = MergeDriver(settings)
    size = MergeTask.slice_size
    spent: Counter = Counter()
    out = Counter()
    for second in warm + timed:
        now_ms = second * 1000
        partials = feed[second]
        t0 = time.process_time()
        for i in range(0, len(partials), size):
            results = driver.apply(partials[i : i + size])
            out["records"] += len(kpi_results.records(topic, results, now_ms))
            driver.stream_clocks(now_ms)
        t1 = time.process_time()
        changes = driver.take_changes()
        t2 = time.process_time()
        updates = driver.open_updates()
        out["records"] += len(kpi_results.records(topic, updates, now_ms))
        t3 = time.process_time()
        if second in warm:
            out.clear()
            continue
        spent["apply"] += t1 - t0
        spent["take_changes"] += t2 - t1
        spent["open_updates"] += t3 - t2
        out["partials"] += len(partials)
        out["state_keys"] += len(changes)
        out["state_bytes"] += sum(len(v) for v in changes.values() if v)
    return {**spent, **out, "total": sum(spent.values())}


def decode_run(feed: dict[int, list[bytes]], timed: list[int]) -> float:
    t0 = time.process_time()
    for second in timed:
        for value in feed[second]:
            decode_partial(value)
    return time.process_time() - t0


def entries(measures: Measures) -> tuple[int, int]:
    """(measure entries, sketch items) of one snapshot's measures: see the docstring."""
    n = items = 0
    for value in measures.values():
        if isinstance(value, dict):
            n += len(value)
            continue
        n += 1
        if isinstance(value, Distinct):
            items += value.compact().num_retained
        elif isinstance(value, Quantiles):
            items += len(value.store.bins)
        elif isinstance(value, TopItems):
            items += value.sketch.num_active_items
    return n, items


STATS: dict[str, dict[str, float]] = {}  # catalogue -> per-partition figures per second, for the report


def describe(catalogues: dict[str, dict[int, list[bytes]]], timed: list[int], source_partitions: int) -> None:
    """What one partition sends per second of live traffic, per catalogue and family."""
    n = len(timed) * source_partitions
    for name, recorded in catalogues.items():
        by_family: dict[str, Counter] = defaultdict(Counter)
        for second in timed:
            for value in recorded.get(second, []):
                message = decode_partial(value)
                family = by_family[message.family]
                family["bytes"] += len(value)
                if isinstance(message, Snapshot):
                    family[f"snapshots {message.size_ms // 1000}s"] += 1
                    e, items = entries(message.measures)
                    family["entries"] += e
                    family["sketch items"] += items
                    family["sketches"] += sum(isinstance(v, SKETCHES) for v in message.measures.values())
                else:
                    family["progress"] += 1
        total = sum(by_family.values(), Counter())
        partials = total["progress"] + sum(v for k, v in total.items() if k.startswith("snapshots"))
        STATS[name] = {"partials": partials / n, "entries": total["entries"] / n, "bytes": total["bytes"] / n}
        print(
            f"{name}: per partition and second of live traffic: {partials / n:.1f} partials, "
            f"{total['entries'] / n:,.0f} measure entries, {total['sketch items'] / n:,.0f} sketch items, "
            f"{total['bytes'] / n / 1000:,.1f} KB"
        )
        for family, c in sorted(by_family.items()):
            snaps = sum(v for k, v in c.items() if k.startswith("snapshots"))
            per_snapshot = (
                f"{c['entries'] / max(snaps, 1):,.0f} entries/snapshot ({c['sketches'] / max(snaps, 1):.1f} sketches)"
            )
            kinds = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(c.items()) if k.startswith(("snap", "prog")))
            print(f"  {family:9} {kinds}; {per_snapshot if snaps else ''}; {c['bytes'] / n / 1000:,.1f} KB/s")


def print_extras() -> None:
    print("after: measures added per snapshot (issues 24 and 25), entries = counters + label values + sketches:")
    for family, extras in EXTRA.items():
        n = sum(size if kind in ("labels", "quantiles") else 1 for _, kind, size in extras)
        kinds: dict[str, list[str]] = defaultdict(list)
        for name, kind, size in extras:
            kinds[kind].append(name if kind == "count" else f"{name} {size}")
        print(f"  {family:9} +{n}: " + "; ".join(f"{kind}: {', '.join(names)}" for kind, names in kinds.items()))


def report(runs: dict[tuple[str, int], list[dict]], seconds: int, per_partition: float) -> None:
    print(f"\nmerge task over {seconds} s of live traffic; medians (min–max) of {len(next(iter(runs.values())))} runs")
    header = (
        "catalogue         P  partials/s in  CPU s per s (util.)  merge/decode  capacity partials/s  "
        "capacity entries/s  saturates at P  share apply/changes/open  merge-state KB/s"
    )
    print(header)
    for (catalogue, count), results in runs.items():
        stats = STATS[results[0].get("shard of", catalogue)]
        util = [r["total"] / seconds for r in results]
        ratio = [r["total"] / r["decode"] for r in results]
        capacity = [r["partials"] / r["total"] for r in results]
        # entries/s from the catalogue's mean entries per partial (not counted per family: none for a shard)
        entries_cap = [] if "shard of" in results[0] else [c * stats["entries"] / stats["partials"] for c in capacity]
        saturate = [count / u for u in util]
        mid = results[util.index(h.median(util))] if len(util) % 2 else results[0]
        shares = "/".join(f"{mid[k] / mid['total']:.0%}" for k in ("apply", "take_changes", "open_updates"))
        print(
            f"{catalogue:14} {count:4}  {results[0]['partials'] / seconds:13,.0f}  "
            f"{h.median_range(util, 3):>19}  {h.median_range(ratio, 1):>12}  {h.median_range(capacity):>19}  "
            f"{h.median_range(entries_cap):>18}  {h.median_range(saturate):>14}  {shares:>24}  "
            f"{mid['state_bytes'] / seconds / 1000:16,.0f}"
        )
    print(
        f"\nsaturation: P at which the merge task needs one full core (CPU s per s = 1), from the largest P run; "
        f"events/s = P × the per-partition event rate (generated here: {per_partition:,.0f}/s; a worker: 30–40k/s)"
    )
    for catalogue in STATS:
        largest = max(count for name, count in runs if name == catalogue)
        p = statistics.median(largest / (r["total"] / seconds) for r in runs[(catalogue, largest)])
        print(
            f"  {catalogue:5} (from P={largest}): P ≈ {p:,.0f}; × {per_partition:,.0f} events/s = "
            f"{p * per_partition / 1e6:,.2f}M events/s; × 35k events/s = {p * 35_000 / 1e6:,.1f}M events/s"
        )


if __name__ == "__main__":
    main()
