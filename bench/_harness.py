"""Shared pieces of the benchmarks: generated input, and the in-process pipeline.

`generate(n, ...)` returns the first `n` events of a seeded `shoppulse generate` timeline as
(stream, partition, key, value) tuples: encoded and keyed exactly as `KafkaSink` sends them
(`streams.events.encode` / `key_of`), partition as aiokafka's default partitioner picks it.

`InProcessPipeline` is what one worker does per batch, minus Faust and Kafka: split the
batch by partition, parse, `PartitionEngine.process`, `take_changes()` (the state the agent
writes to its table), `take_outbox()` serialised as partials, then the merge stage
(`decode_partial`, `Merger.apply`, `Merger.take_changes`, the Prometheus exporter and the
kpi-results publisher) and the 1-second tick. Each stage's time is accumulated separately.
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

from aiokafka.partitioner import murmur2  # noqa: E402

from shoppulse.streams.engine import ENGINES, decode_partial  # noqa: E402
from shoppulse.streams.events import InvalidEvent, encode, key_of, parse  # noqa: E402
from shoppulse.streams.exporters import Metrics, PrometheusExporter, ResultsPublisher  # noqa: E402
from shoppulse.streams.merge import Merger  # noqa: E402
from shoppulse.streams.settings import Settings  # noqa: E402
from shoppulse.tools.generate import GeneratorConfig, generate_events  # noqa: E402

STREAMS = ("clickstream", "orders", "tickets")
HOUR_MS = 3_600_000


def kafka_partition(key: bytes, partitions: int) -> int:
    """aiokafka's DefaultPartitioner (murmur2), as the producer assigns keyed records."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def generate(n: int, *, rate: float, seed: int, partitions: int = 4):
    """The first `n` events of a seeded timeline of `rate` events/s that starts on an hour
    boundary in the past. Returns (records, events, start_ms)."""
    duration_s = n / rate * 1.6 + 60  # the daily curve moves the rate by up to ±20 %
    # Start on an hour boundary (at least an hour ago), so every run fills the same windows
    # (run to run, the 1 h window's state must not depend on the wall clock).
    start_ms = int(time.time() * 1000) - int(duration_s * 1000) - HOUR_MS
    start_ms -= start_ms % HOUR_MS
    records, events = [], []
    for stream, event in generate_events(GeneratorConfig(rate=rate, seed=seed), start_ms, duration_s):
        key = key_of(stream, event).encode()
        records.append((stream, kafka_partition(key, partitions), key, encode(event)))
        events.append((stream, event))
        if len(records) >= n:
            break
    if len(records) < n:
        raise RuntimeError(f"the timeline gave only {len(records)} events; raise the duration")
    return records, events, start_ms


class InProcessPipeline:
    STAGES = ("parse", "engine", "changes", "partials", "merge", "tick")

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.engines = {}
        self.merger = Merger(self.settings)
        self.metrics = Metrics()
        self.publisher = ResultsPublisher()
        self.listeners = [self.publisher, PrometheusExporter(self.metrics, min(self.settings.windows_seconds) * 1000)]
        self.partials: list[bytes] = []
        self.seconds = dict.fromkeys(self.STAGES, 0.0)
        self.counts = defaultdict(int)  # accepted, duplicates, late, invalid, partials, results, state_writes
        # Largest single record of each kind the worker would produce (Kafka's default limit is 1 MiB).
        self.max_bytes = {"engine_state": 0, "partial": 0, "merge_state": 0}

    def engine(self, stream: str, partition: int):
        key = (stream, partition)
        engine = self.engines.get(key)
        if engine is None:
            engine = self.engines[key] = ENGINES[stream](partition, self.settings)
        return engine

    def run(self, records, batch: int | None = None) -> None:
        """Feed records in order; each stream is batched separately, as its agent does."""
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
                    self.tick()
                    last_tick = time.monotonic()
        for stream, items in pending.items():
            if items:
                self.process_batch(stream, items)
        self.tick()

    def process_batch(self, stream: str, items) -> None:
        s = self.seconds
        perf = time.perf_counter
        now_ms = int(time.time() * 1000)
        by_partition: dict[int, list] = defaultdict(list)
        for item in items:
            by_partition[item[1]].append(item[3])
        for partition, values in by_partition.items():
            t0 = perf()
            parsed = []
            for value in values:
                try:
                    parsed.append(parse(stream, value, now_ms=now_ms))
                except InvalidEvent:
                    self.counts["invalid"] += 1
            t1 = perf()
            engine = self.engine(stream, partition)
            result = engine.process(parsed, now_ms)
            t2 = perf()
            changes = engine.take_changes()
            t3 = perf()
            partials = [m.to_bytes() for m in engine.take_outbox(False)]
            self.partials.extend(partials)
            t4 = perf()
            big = self.max_bytes
            big["engine_state"] = max(big["engine_state"], max((len(v) for v in changes.values() if v), default=0))
            big["partial"] = max(big["partial"], max(map(len, partials), default=0))
            s["parse"] += t1 - t0
            s["engine"] += t2 - t1
            s["changes"] += t3 - t2
            s["partials"] += t4 - t3
            self.counts["accepted"] += result.accepted
            self.counts["duplicates"] += result.duplicates
            self.counts["late"] += len(result.late)
            self.counts["state_writes"] += len(changes)
        self.merge()

    def merge(self) -> None:
        if not self.partials:
            return
        t0 = time.perf_counter()
        messages, self.partials = self.partials, []
        self.counts["partials"] += len(messages)
        results = []
        for data in messages:
            results.extend(self.merger.apply(decode_partial(data)))
        changes = self.merger.take_changes()
        self.counts["state_writes"] += len(changes)
        big = self.max_bytes
        big["merge_state"] = max(big["merge_state"], max((len(v) for v in changes.values() if v), default=0))
        big["partial"] = max(big["partial"], max(map(len, messages), default=0))
        self._emit(results)
        self.seconds["merge"] += time.perf_counter() - t0

    def tick(self) -> None:
        t0 = time.perf_counter()
        now_ms = int(time.time() * 1000)
        for engine in self.engines.values():
            engine.tick(now_ms)
            self.partials.extend(m.to_bytes() for m in engine.take_outbox(True))
        self.seconds["tick"] += time.perf_counter() - t0
        self.merge()
        t0 = time.perf_counter()
        self._emit(self.merger.open_updates())
        self.seconds["tick"] += time.perf_counter() - t0

    def _emit(self, results) -> None:
        if results:
            for listener in self.listeners:
                listener.on_results(results)
            self.counts["results"] += len(self.publisher.take())


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def code_version() -> str:
    """HEAD plus whether shoppulse/ had uncommitted changes (other engineers edit this checkout)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "shoppulse")
    return git("rev-parse", "--short", "HEAD") + (f" + uncommitted changes in {len(dirty.splitlines())} shoppulse/ files" if dirty else "")


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
