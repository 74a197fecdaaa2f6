"""Runs the partition engines and the merger in-process (no Kafka, no Faust) over events.

The same classes the agents use; only the transport is replaced by lists. Used by the
fast KPI tests; the integration tests run the real worker on the real broker.
"""

from __future__ import annotations

import zlib

import orjson

from shoppulse.streams.engine import ENGINES, decode_partial
from shoppulse.streams.events import InvalidEvent, key_of, parse
from shoppulse.streams.merge import Merger
from shoppulse.streams.settings import Settings

FAR_FUTURE_MS = 4_000_000_000_000


def run(events: list[tuple[str, dict]], settings: Settings | None = None, *, batch: int = 500,
        restart_every: int | None = None) -> list[dict]:  # fmt: skip
    """Feed (stream, event dict) pairs in order; close everything; return all kpi-results records.

    With `restart_every`, engine state is dumped and restored every N batches, as after a crash.
    """
    settings = settings or Settings()
    merger = Merger(settings)
    engines = {}
    records: list[dict] = []

    def deliver(engine) -> None:
        for message in engine.take_outbox(snapshots_of_open=False):
            for result in merger.apply(decode_partial(message.to_bytes())):
                records.extend(orjson.loads(v) for _, v in result.records())

    pending: dict[tuple[str, int], list] = {}
    batches = 0
    clock = 0
    for stream, record in events:
        payload = orjson.dumps(record)
        try:
            parsed = parse(stream, payload, now_ms=FAR_FUTURE_MS - 86_400_000)
        except InvalidEvent:
            continue
        partition = zlib.crc32(key_of(stream, parsed.event).encode()) % settings.partitions
        pending.setdefault((stream, partition), []).append(parsed)
        if len(pending[(stream, partition)]) >= batch:
            clock += 1
            _flush(engines, pending, (stream, partition), settings, clock)
            deliver(engines[(stream, partition)])
            batches += 1
            if restart_every and batches % restart_every == 0:
                engines = {k: _restarted(e, settings) for k, e in engines.items()}
    for key in list(pending):
        clock += 1
        _flush(engines, pending, key, settings, clock)
    # Every partition of every stream reports, then the watermark jumps to the wall clock.
    for stream in ENGINES:
        for partition in range(settings.partitions):
            engine = engines.setdefault((stream, partition), ENGINES[stream](partition, settings))
            engine.watermark.last_arrival_wall_ms = 0
            engine.tick(FAR_FUTURE_MS)
            deliver(engine)
    return records


def _flush(engines, pending, key, settings, clock) -> None:
    stream, partition = key
    engine = engines.get(key) or engines.setdefault(key, ENGINES[stream](partition, settings))
    engine.process(pending.pop(key), wall_ms=clock)


def _restarted(engine, settings):
    """A fresh engine restored from the state the old one had written back."""
    changes = engine.take_changes()
    store = getattr(engine, "_store", {})
    for key, value in changes.items():
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value
    fresh = type(engine)(engine.partition, settings)
    fresh.restore(store.items())
    fresh._store = store
    fresh.outbox = engine.outbox  # messages already produced are not lost with the process
    return fresh
