"""Latency of the shoppulse worker under steady live traffic (issue 12's latency targets).

    .venv/bin/python bench/latency.py [--rate 5000] [--seconds 300] [--worker-variant stock]

1. Starts a LocalKafka (or uses `--broker`) and a real worker on fresh topics, then produces a
   seeded `shoppulse generate` timeline **live** at `--rate` events/s: the timeline is moved
   to start now and scaled linearly to that mean rate (the generator's daily curve makes its
   own rate vary), and each event is sent when the wall clock reaches its `ts`. Sent with the project's producer (`tools.sink.KafkaSink`).
2. **Record timestamp -> processed**: the worker's `shoppulse_processing_latency_seconds`
   histogram (Kafka record timestamp, set when the producer sends, to the moment the event
   is fed to its engine), scraped from /metrics after the warm-up and at the end; the
   difference is the measured interval. p50/p99 are interpolated within buckets as
   Prometheus' `histogram_quantile` does; the share at or under 0.5 s is exact (a bucket bound).
3. **Window close -> final record on kpi-results**: a `read_committed` consumer of
   `kpi-results` in this process notes when each final record arrives. A window closes when
   the watermark passes its end + grace; with live timestamps that is the wall-clock moment
   end + grace, so the latency of a (family, window) is the arrival of its first final record
   minus (end + grace), and of its last final record. The sessions family is left out: its
   windows close only when their sessions end (30 min of inactivity), not at end + grace. Only
   windows that close after the warm-up and at least 10 s before the traffic stops count.
   A second `read_committed` consumer reads the partials topic and notes when each source
   partition's `Progress` passed a window end: the last of them is the source stage's part of
   the latency, the rest is the merge stage's.
   The events over 0.5 s are also broken down by the second of the minute they were processed
   in (the histogram scraped every second), which shows whether window ends cause them.
4. Also: the rate actually produced, and the worker's CPU share and peak RSS (psutil).
5. With `--profile FILE`: py-spy samples the worker over the measured interval (100/s, without
   pausing it; py-spy comes with the `bench` extra) and a summary by package and function is
   printed, where the worker's time goes under live traffic.

Benchmarks print figures; they do not pass or fail.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import _harness as h  # also puts the repository on sys.path
import msgspec
import orjson
import psutil
from aiokafka import AIOKafkaConsumer
from throughput import machine, machine_line, namespace, worker_command

from shoppulse.kafka.admin import ensure_topics
from shoppulse.kafka.broker import LocalKafka, free_port
from shoppulse.streams.kpis import CATALOGUE
from shoppulse.tools.sink import KafkaSink
from shoppulse.topics import partials_topic

BUCKET = re.compile(r'^shoppulse_processing_latency_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} ([0-9.e+]+)$', re.M)
FAMILY = {kpi.key: kpi.family for kpi in CATALOGUE}
WARM_UP_S = 30.0  # startup, the first fetches and the first checkpoint
PY_SPY = [str(Path(sys.executable).with_name("py-spy"))]  # from the `bench` extra
TAIL_S = 10.0  # windows closing this close to the end of traffic may not have had their final yet


def scrape_buckets(port: int) -> dict[float, float] | None:
    """Cumulative bucket counts of the processing-latency histogram, summed over topics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    buckets: dict[float, float] = defaultdict(float)
    for bound, value in BUCKET.findall(text):
        buckets[float(bound)] += float(value)
    return dict(buckets)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' `histogram_quantile`: linear within the bucket that holds the q-th rank."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower  # as Prometheus: the highest finite bound
            return lower + (bound - lower) * (rank - below) / max(buckets[bound] - below, 1e-12)
        lower, below = bound, buckets[bound]
    return None


def slow_seconds(series: list[tuple[float, dict[float, float]]]) -> dict[int, int]:
    """Events processed more than 0.5 s after their record timestamp, by the second of the
    minute in which they were scraped (where in the minute the slow ones are: window ends
    fall on whole minutes)."""
    slow: dict[int, int] = defaultdict(int)
    for (_, earlier), (at, later) in itertools.pairwise(series):
        over = (later.get(float("inf"), 0) - later.get(0.5, 0)) - (earlier.get(float("inf"), 0) - earlier.get(0.5, 0))
        if over > 0:
            slow[int(at) % 60] += int(over)
    return dict(slow)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def produce_live(settings, events, started_at: float) -> tuple[int, float]:
    """Sends each event when the wall clock reaches its (moved) ts. Returns (sent, seconds)."""
    async with KafkaSink(settings) as sink:
        for i, (stream, event) in enumerate(events):
            delay = event.ts / 1000 - time.time()
            if delay > 0.005:  # the producer's linger batches what is sent meanwhile
                await asyncio.sleep(delay)
            elif i % 500 == 0:
                await asyncio.sleep(0)  # let the producer and the results reader run
            await sink.send(stream, event)
    return len(events), time.time() - started_at


async def read_committed(settings, topic: str, on_value, stop: asyncio.Event) -> None:
    """Read `topic` from the start, read_committed, until `stop`: `on_value(value, arrival)` per
    record, with the wall-clock time its fetch returned."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.broker,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for messages in batch.values():
                for message in messages:
                    on_value(message.value, now)
    finally:
        await consumer.stop()


def final_arrival(arrivals: dict):
    """(family, window, window_start, window_end) -> [first, last] arrival of its final records."""

    def on_value(value: bytes, now: float) -> None:
        record = orjson.loads(value)
        family = FAMILY.get(record["kpi"], "cross")
        if not record["final"] or family == "sessions":
            return
        key = (family, record["window"], epoch_ms(record["window_start"]), epoch_ms(record["window_end"]))
        seen = arrivals.setdefault(key, [now, now])
        seen[1] = now

    return on_value


def progress_arrival(progress: dict):
    """(family, partition) -> [(arrival, through_ms)] of the committed `Progress` partials: when
    each source partition's finals became visible to the merge stage (its checkpoint committed),
    the first of the two stages a final passes."""

    def on_value(value: bytes, now: float) -> None:
        if not value.startswith(b'{"type":"progress"'):  # snapshots: large, not needed
            return
        record = orjson.loads(value)
        progress.setdefault((record["family"], record["partition"]), []).append((now, record["through_ms"]))

    return on_value


def sources_final(progress: dict, end_ms: int) -> tuple[float, str] | None:
    """When the last source partition's progress passed `end_ms`, and which one it was."""
    latest = None
    for (family, partition), arrivals in progress.items():
        if family == "sessions":
            continue
        first = next((arrival for arrival, through in arrivals if through >= end_ms), None)
        if first is None:
            return None
        if latest is None or first > latest[0]:
            latest = (first, f"{family}/{partition}")
    return latest


async def main(args) -> int:
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    info = machine()
    print(machine_line(info))
    workdir = Path(tempfile.mkdtemp(prefix="shoppulse-latency-"))
    broker = None
    proc = None
    try:
        if args.broker:
            address = args.broker
        else:
            broker = LocalKafka(port=0, data_dir=workdir / "kafka").start()
            address = broker.bootstrap
        tag = uuid.uuid4().hex[:8]
        settings, env = namespace(address, tag)
        settings.app_id = env["SHOPPULSE_APP_ID"] = f"latency-{tag}"
        await ensure_topics(settings)

        n = int(args.rate * args.seconds)
        _records, events, _start_ms = h.generate(n, rate=args.rate, seed=args.seed)
        del _records
        # Move the timeline so it starts once the worker has had time to start, and scale it to
        # exactly `rate` on average (the generator's daily curve makes its rate a mean only).
        lead_s = 8.0
        origin = events[0][1].ts
        scale = (events[-1][1].ts - origin) / 1000 / (n / args.rate)
        start = int((time.time() + lead_s) * 1000)
        events = [(stream, msgspec.structs.replace(e, ts=start + int((e.ts - origin) / scale))) for stream, e in events]
        first_ts, last_ts = events[0][1].ts, events[-1][1].ts
        print(
            f"{n:,} events over {(last_ts - first_ts) / 1000:.0f} s of event time ({args.rate:g} ev/s, seed {args.seed})"
        )

        port = free_port()
        log_path = workdir / "worker.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                worker_command(args.worker_variant, workdir / "data", port),
                env=dict(os.environ, **env),
                cwd=h.ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        ps = psutil.Process(proc.pid)
        arrivals: dict = {}
        progress: dict = {}
        stop = asyncio.Event()
        readers = [
            asyncio.create_task(read_committed(settings, settings.topics.results, final_arrival(arrivals), stop)),
            asyncio.create_task(read_committed(settings, partials_topic(settings), progress_arrival(progress), stop)),
        ]
        producing = asyncio.create_task(produce_live(settings, events, first_ts / 1000))

        warm_until = first_ts / 1000 + WARM_UP_S
        while time.time() < warm_until:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            await asyncio.sleep(0.5)
        before = scrape_buckets(port)
        if before is None:
            raise RuntimeError(f"no /metrics {WARM_UP_S:.0f} s after the start; log {log_path}")
        me = psutil.Process()
        broker_ps = psutil.Process(broker.process.pid) if broker is not None else None
        cpu0, t0 = sum(ps.cpu_times()[:2]), time.perf_counter()
        profiler = None
        if args.profile:
            # Sampled from outside (py-spy, without pausing the worker) over the measured interval.
            measured_s = max(1, int(events[-1][1].ts / 1000 - time.time()))
            profiler = subprocess.Popen(
                [*PY_SPY, "record", "--pid", str(proc.pid), "--duration", str(measured_s), "--rate", "100"]
                + ["--nonblocking", "--format", "raw", "--output", args.profile],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        own_cpu0 = sum(me.cpu_times()[:2])
        broker_cpu0 = sum(broker_ps.cpu_times()[:2]) if broker_ps else 0.0
        peak_rss = 0
        series = [(time.time(), before)]  # (wall clock, buckets) about once a second
        while not producing.done():
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            peak_rss = max(peak_rss, ps.memory_info().rss)
            await asyncio.sleep(0.5)
            if time.time() - series[-1][0] >= 1.0:
                buckets = await asyncio.to_thread(scrape_buckets, port)  # not blocking the producer
                if buckets is not None:
                    series.append((time.time(), buckets))
        sent, produce_s = await producing
        await asyncio.sleep(2.0)  # the last records' latency (they are counted when processed)
        after = scrape_buckets(port) or {}
        elapsed = time.perf_counter() - t0
        cpu_share = (sum(ps.cpu_times()[:2]) - cpu0) / elapsed
        own_share = (sum(me.cpu_times()[:2]) - own_cpu0) / elapsed  # producer and results reader
        broker_share = (sum(broker_ps.cpu_times()[:2]) - broker_cpu0) / elapsed if broker_ps else None
        await asyncio.sleep(TAIL_S)
        stop.set()
        await asyncio.gather(*readers)

        measured = {b: after.get(b, 0) - before.get(b, 0) for b in after}
        count = measured.get(float("inf"), 0)
        p50, p99 = histogram_quantile(0.5, measured), histogram_quantile(0.99, measured)
        within = measured.get(0.5, 0) / count if count else 0.0
        grace_ms = int(settings.grace_seconds * 1000)
        last_close = last_ts - TAIL_S * 1000
        closes = {
            key: [(first * 1000 - (key[3] + grace_ms)) / 1000, (last * 1000 - (key[3] + grace_ms)) / 1000]
            for key, (first, last) in arrivals.items()
            if warm_until * 1000 <= key[3] + grace_ms <= last_close
        }
        missing = []  # (family, window) closes in the interval with no final at all
        for family in ("traffic", "sales", "support"):
            for size in settings.windows_seconds:
                end = (int(warm_until * 1000) - grace_ms) // (size * 1000) * (size * 1000) + size * 1000
                while end + grace_ms <= last_close:
                    if end + grace_ms >= warm_until * 1000 and not any(
                        k[0] == family and k[3] == end and k[3] - k[2] == size * 1000 for k in closes
                    ):
                        missing.append((family, size, end))
                    end += size * 1000
        firsts = [v[0] for v in closes.values()]
        lasts = [v[1] for v in closes.values()]

        slow_by_second = slow_seconds(series)

        print(f"produced {sent:,} events in {produce_s:.1f} s: {sent / produce_s:,.0f} events/s")
        print(
            f"worker [{args.worker_variant or 'stock'}]: CPU {cpu_share:.0%} of one core, peak RSS "
            f"{peak_rss / 2**20:.0f} MB; this process (producer, results reader) {own_share:.0%}"
            + (f", broker {broker_share:.0%}" if broker_share is not None else "")
            + f"; load {h.load_average()}"
        )
        print(
            f"record timestamp -> processed, {count:,.0f} events after the {WARM_UP_S:.0f} s warm-up: "
            f"p50 {p50:.3f} s, p99 {p99:.3f} s, {within:.2%} within 0.5 s (target: p99 <= 0.5 s)"
        )
        total_slow = sum(slow_by_second.values())
        if total_slow:
            worst = sorted(slow_by_second.items(), key=lambda kv: -kv[1])[:8]
            print(
                "  over 0.5 s, by second of the minute (scraped each second; window ends at :00): "
                + ", ".join(f":{second:02d} {n / total_slow:.0%}" for second, n in worst)
            )
        if firsts:
            print(
                f"window close (end + grace) -> final on kpi-results, {len(closes)} (family, window) closes: "
                f"first record p50 {quantile(firsts, 0.5):.2f} s, p99 {quantile(firsts, 0.99):.2f} s, "
                f"max {max(firsts):.2f} s; last record p50 {quantile(lasts, 0.5):.2f} s, "
                f"p99 {quantile(lasts, 0.99):.2f} s, max {max(lasts):.2f} s (target: p99 <= 2 s)"
            )
            for key, (first, last) in sorted(closes.items(), key=lambda kv: (kv[0][3], kv[0][0])):
                print(f"  {key[0]:8} {key[1]:>3} ending {key[3] // 1000}: first {first:.2f} s, last {last:.2f} s")
            print(
                "  the two stages, by window end, each from end + grace: when the last source partition "
                "(of any family) committed progress past the end, and the first final (of any family)"
            )
            for end in sorted({key[3] for key in closes}):
                close_s = (end + grace_ms) / 1000
                ready = sources_final(progress, end)
                first_final = min(v[0] for k, v in closes.items() if k[3] == end)
                stage = (
                    f"sources {ready[0] - close_s:.2f} s (last: {ready[1]})" if ready else "sources: no progress seen"
                )
                print(f"  ending {end // 1000}: {stage}, first final {first_final:.2f} s")
        print(f"closes in the interval with no final record: {len(missing)} {missing[:6]}")
        if profiler is not None:
            profiler.wait(60)
            print(f"worker profile (py-spy, 100 samples/s, raw stacks in {args.profile}):")
            for line in h.sampled_profile(Path(args.profile).read_text()):
                print("  " + line)
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "machine": info,
                        "rate": args.rate,
                        "seconds": args.seconds,
                        "variant": args.worker_variant or "stock",
                        "produced_eps": sent / produce_s,
                        "cpu_share": cpu_share,
                        "bench_cpu_share": own_share,
                        "broker_cpu_share": broker_share,
                        "peak_rss_mb": peak_rss / 2**20,
                        "processing_buckets": {str(k): v for k, v in measured.items()},
                        "processing_p50_s": p50,
                        "processing_p99_s": p99,
                        "closes": [[*k, *v] for k, v in closes.items()],
                        "missing": missing,
                    },
                    indent=1,
                )
            )
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=5000.0, help="events/s produced live")
    parser.add_argument("--seconds", type=float, default=300.0, help="how long traffic runs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--broker", help="HOST:PORT of a running broker (default: start a LocalKafka)")
    parser.add_argument("--worker-variant", default="stock", help="bench/worker_variant.py variant, or 'stock'")
    parser.add_argument("--json", help="also write the raw figures to this file")
    parser.add_argument("--profile", metavar="FILE", help="also sample the worker with py-spy (stacks to FILE)")
    args = parser.parse_args()
    if args.worker_variant == "stock":
        args.worker_variant = None
    sys.exit(asyncio.run(main(args)))
