"""Shared pieces of the benchmarks: generated input, and the in-process pipeline.

`generate(n, ...)` returns the first `n` events of a seeded `shoppulse generate` timeline as
(stream, partition, key, value) tuples: encoded and keyed exactly as `KafkaSink` sends them
(`streams.events.encode` / `key_of`), partition as aiokafka's default partitioner picks it.

`InProcessPipeline` is the core's `Pipeline` driver (the same objects the worker's partition
tasks drive, agents/) plus the worker's outputs: per batch and partition, `feed` (parse and
engine), the state changes a checkpoint writes to the changelog (`changes`), the merge
stage with the Prometheus exporter and the kpi-results records (`merge`), and the
1-second tick. Each stage's time is accumulated separately.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shoppulse.kafka.partitioner import partition_for  # noqa: E402
from shoppulse.outputs import kpi_results  # noqa: E402
from shoppulse.outputs.prometheus import Metrics, PrometheusExporter  # noqa: E402
from shoppulse.settings import Settings  # noqa: E402
from shoppulse.streams.cold import ColdStore  # noqa: E402
from shoppulse.streams.events import STREAMS, encode, key_of  # noqa: E402
from shoppulse.streams.pipeline import Pipeline, RawRecord  # noqa: E402
from shoppulse.tools.generate import GeneratorConfig, generate_events  # noqa: E402

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
START_HOUR_UTC = 14  # where the daily curve crosses its mean rate, rising


def generate(n: int, *, rate: float, seed: int, partitions: int = 4, **config):
    """The first `n` events of a seeded timeline of `rate` events/s that starts at 14:00 UTC on
    a past day: the same events, shifted by whole days, in every run (`config`: more
    `GeneratorConfig` fields). Returns (records, events, start_ms)."""
    duration_s = n / rate * 2.5 + 60  # the daily curve and the sessions ramping up: the first minutes are slower
    # Start at the same hour of day (at least an hour ago) in every run: the generator's daily
    # curve follows the hour of day, so a start anchored to the wall clock's hour gave a
    # different stream (and sometimes fewer than `n` events) at different times of day.
    start_ms = int(time.time() * 1000) - int(duration_s * 1000) - HOUR_MS
    start_ms -= (start_ms - START_HOUR_UTC * HOUR_MS) % DAY_MS
    records, events = [], []
    for stream, event in generate_events(GeneratorConfig(rate=rate, seed=seed, **config), start_ms, duration_s):
        key = key_of(stream, event).encode()
        records.append((stream, partition_for(key, partitions), key, encode(event)))
        events.append((stream, event))
        if len(records) >= n:
            break
    if len(records) < n:
        raise RuntimeError(f"the timeline gave only {len(records)} events; raise the duration")
    return records, events, start_ms


def live_seconds(records, timestamps):
    """The records grouped as a worker keeping up with live traffic fetches them: per second of
    event time (ascending), one batch per (stream, partition), with offsets counted per
    partition. Yields (second, {(stream, partition): [RawRecord]}); feed each batch with the
    event time as the wall clock, then tick at `second * 1000`."""
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    by_second: dict[int, list] = defaultdict(list)
    for record, ts in zip(records, timestamps, strict=True):
        by_second[ts // 1000].append(record)
    for second in sorted(by_second):
        groups: dict[tuple[str, int], list[RawRecord]] = defaultdict(list)
        for stream, partition, key, value in by_second[second]:
            groups[(stream, partition)].append(RawRecord(offsets[(stream, partition)], value, key))
            offsets[(stream, partition)] += 1
        yield second, groups


class InProcessPipeline(Pipeline):
    """The core's `Pipeline` driver with the worker's outputs (Prometheus exporter, kpi-results
    records) and each stage's time and volume recorded."""

    STAGES = ("feed", "changes", "merge", "tick")

    def __init__(self, settings: Settings | None = None, cold: ColdStore | None = None):
        super().__init__(settings, cold=cold)
        self.metrics = Metrics()
        self.exporter = PrometheusExporter(self.metrics, min(self.settings.windows_seconds) * 1000)
        self.seconds = dict.fromkeys(self.STAGES, 0.0)
        self.counts: dict[str, int] = defaultdict(
            int
        )  # accepted, duplicates, late, invalid, partials, results, state_writes
        # Largest single record of each kind the worker would produce (Kafka's default limit is 1 MiB).
        self.max_bytes = {"engine_state": 0, "partial": 0, "merge_state": 0}
        self.offsets: dict[tuple[str, int], int] = defaultdict(int)
        self.spent = 0.0  # seconds of the changes and merge stages inside the current call

    def run(self, records, batch: int | None = None) -> None:
        """Feed records in order, in batches of up to `batch_max_events` records (the data plane's
        fetch limit) of one stream each."""
        batch = batch or self.settings.batch_max_events
        pending: dict[str, list] = {s: [] for s in STREAMS}
        last_tick = time.monotonic()
        for record in records:
            items = pending[record[0]]
            items.append(record)
            if len(items) >= batch:
                self.process_batch(record[0], items)
                pending[record[0]] = []
                if time.monotonic() - last_tick >= self.settings.update_interval_seconds:
                    self.timed_tick()
                    last_tick = time.monotonic()
        for stream, items in pending.items():
            if items:
                self.process_batch(stream, items)
        self.timed_tick()

    def run_live(self, records, timestamps) -> None:
        """Live cadence: the records of each second of event time as one batch per stream and
        partition, then the 1-second tick (open windows' snapshots and non-final updates), as a
        worker keeping up with live traffic runs them."""
        by_second: dict[int, list] = defaultdict(list)
        for record, ts in zip(records, timestamps, strict=True):
            by_second[ts // 1000].append(record)
        for second in sorted(by_second):
            for stream in STREAMS:
                items = [r for r in by_second[second] if r[0] == stream]
                if items:
                    self.process_batch(stream, items)
            self.timed_tick()

    def process_batch(self, stream: str, items) -> None:
        """One fetched batch: split by partition, then the driver per partition (the data plane
        hands each partition's records to its task)."""
        now_ms = int(time.time() * 1000)
        by_partition: dict[int, list[RawRecord]] = defaultdict(list)
        for stream_name, partition, key, value in items:
            offset = self.offsets[(stream_name, partition)]
            self.offsets[(stream_name, partition)] = offset + 1
            by_partition[partition].append(RawRecord(offset, value, key))
        for partition, records in by_partition.items():
            self.spent = 0.0
            t0 = time.perf_counter()
            result = self.feed(stream, partition, records, now_ms)
            self.seconds["feed"] += time.perf_counter() - t0 - self.spent  # parse and engine
            self.counts["accepted"] += result.accepted
            self.counts["duplicates"] += result.duplicates
            self.counts["late"] += result.late
            self.counts["invalid"] += result.invalid

    def on_state(self, stream, partition, changes) -> None:
        t0 = time.perf_counter()
        super().on_state(stream, partition, changes)
        self.counts["state_writes"] += len(changes)
        big = self.max_bytes
        big["engine_state"] = max(big["engine_state"], max((len(v) for v in changes.values() if v), default=0))
        self._account("changes", time.perf_counter() - t0)

    def on_partials(self, partials) -> None:
        t0 = time.perf_counter()
        self.counts["partials"] += len(partials)
        big = self.max_bytes
        big["partial"] = max(big["partial"], max((len(v) for _, v in partials), default=0))
        super().on_partials(partials)
        changes = self.merge.take_changes()
        self.counts["state_writes"] += len(changes)
        big["merge_state"] = max(big["merge_state"], max((len(v) for v in changes.values() if v), default=0))
        self._account("merge", time.perf_counter() - t0)

    def _account(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds
        self.spent += seconds

    def on_results(self, results) -> None:
        if results:
            self.counts["results"] += len(
                kpi_results.records(self.settings.topics.results, results, int(time.time() * 1000))
            )
            self.exporter.on_results_committed(results)

    def timed_tick(self) -> None:
        self.spent = 0.0
        t0 = time.perf_counter()
        self.tick(int(time.time() * 1000))
        self.seconds["tick"] += time.perf_counter() - t0 - self.spent


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def code_version() -> str:
    """HEAD plus whether shoppulse/ had uncommitted changes (other engineers edit this checkout)."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "shoppulse")
    return git("rev-parse", "--short", "HEAD") + (
        f" + uncommitted changes in {len(dirty.splitlines())} shoppulse/ files" if dirty else ""
    )


def median_range(values, digits: int = 0) -> str:
    values = sorted(values)
    if not values:
        return "-"
    f = f",.{digits}f"
    return f"{median(values):{f}} ({values[0]:{f}}–{values[-1]:{f}})"


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def tottime_by_package(stats) -> list[tuple[str, float, int]]:
    """Own time (tottime) of a pstats.Stats summed by package: where the CPU went."""

    def package(filename: str, function: str) -> str:
        if filename == "~":
            return "builtins: " + re.sub(r"^<(built-in )?method |^<|>$", "", function).split(" of ")[0][:40]
        for marker in ("site-packages/", "/shoppulse/", "/lib/python3."):
            if marker in filename:
                rest = filename.split(marker, 1)[1]
                if marker == "/lib/python3.":
                    rest = rest.split("/", 1)[1] if "/" in rest else rest
                    return "stdlib " + rest.split("/")[0].removesuffix(".py")
                if marker == "/shoppulse/":
                    return "shoppulse/" + rest
                return rest.split("/")[0]
        return filename

    totals: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for (filename, _line, function), (_cc, nc, tt, _ct, _callers) in stats.stats.items():
        entry = totals[package(filename, function)]
        entry[0] += tt
        entry[1] += nc
    return sorted(((k, v[0], v[1]) for k, v in totals.items()), key=lambda x: -x[1])


def sampled_profile(raw: str, top: int = 30) -> list[str]:
    """Summary of a py-spy `--format raw` profile (one "frame;frame;... count" line per stack):
    samples by package and by function, own (the innermost frame) and inclusive (anywhere in
    the stack, counted once per sample)."""
    own: dict[str, int] = defaultdict(int)
    inclusive: dict[str, int] = defaultdict(int)
    packages: dict[str, int] = defaultdict(int)
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_name(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        packages[frames[-1].split(":", 1)[0]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return ["no samples"]

    def table(title: str, counts: dict[str, int], n: int) -> list[str]:
        rows = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
        return [title, *(f"  {c / total:6.1%}  {name}" for name, c in rows)]

    return [
        f"{total:,} samples",
        *table("own samples by package", packages, 15),
        *table("own samples by function", own, top),
        *table("inclusive samples by function", inclusive, top),
    ]


def _frame_name(frame: str) -> str:
    """'function (path/file.py:line)' -> 'package/module.py:function'."""
    function, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/shoppulse/", "/lib/python3."):
        if marker in path:
            rest = path.split(marker, 1)[1]
            if marker == "/shoppulse/":
                rest = "shoppulse/" + rest
            elif marker == "/lib/python3.":
                rest = "stdlib/" + rest.split("/", 1)[-1]
            return f"{rest}:{function}"
    return f"{path or '?'}:{function}"
