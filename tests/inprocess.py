"""Runs the whole pipeline in-process (no Kafka, no Faust) over events: the core's
`Pipeline` driver, the same objects the agents drive, with lists for topics.

Used by the fast KPI tests; the integration tests run the real worker on the real broker.
"""

from __future__ import annotations

import orjson

from shoppulse.kafka.partitioner import partition_for
from shoppulse.outputs import kpi_results
from shoppulse.settings import Settings
from shoppulse.streams.events import InvalidEvent, key_of, parse
from shoppulse.streams.pipeline import Pipeline, RawRecord

FAR_FUTURE_MS = 4_000_000_000_000
DAY_MS = 86_400_000
NOW_MS = FAR_FUTURE_MS - DAY_MS  # no event is "in the future"


def run(
    events: list[tuple[str, dict]],
    settings: Settings | None = None,
    *,
    batch: int = 500,
    restart_every: int | None = None,
    open_snapshots: bool = False,
    end_watermark_after_ms: int | None = None,
) -> list[dict]:
    """Feed (stream, event dict) pairs in order; close everything; return all kpi-results records.

    Everything closes as after a long silence (every partition idle, a day of wall clock), or,
    with `end_watermark_after_ms`, at once: each stream's partitions end with a watermark record
    that long after its last event (what `shoppulse replay` sends), and no partition goes idle.

    With `restart_every`, every engine is rebuilt from its written state every N batches, as after a crash.
    With `open_snapshots`, each batch also sends the open windows' snapshots that are due, on a wall
    clock one second further per batch (a 1 h window's once every 60 batches: the fold of its delta).
    """
    settings = settings or Settings()
    pipeline = Pipeline(settings, durable=restart_every is not None)
    pending: dict[tuple[str, int], list[RawRecord]] = {}
    offsets: dict[tuple[str, int], int] = {}
    batches = 0
    for stream, record in events:
        payload = orjson.dumps(record)
        key = _key(stream, payload)
        partition = partition_for(key, settings.partitions) if key is not None else 0
        slot = (stream, partition)
        offset = offsets[slot] = offsets.get(slot, -1) + 1
        pending.setdefault(slot, []).append(RawRecord(offset, payload, key))
        if len(pending[slot]) >= batch:
            open_at_ms = NOW_MS + batches * 1000 if open_snapshots else None
            pipeline.feed(stream, partition, pending.pop(slot), NOW_MS, open_at_ms=open_at_ms)
            batches += 1
            if restart_every and batches % restart_every == 0:
                pipeline.restart()
    for (stream, partition), records in pending.items():
        pipeline.feed(stream, partition, records, NOW_MS)
    if end_watermark_after_ms is not None:
        last: dict[str, int] = {}
        for stream, record in events:
            try:
                last[stream] = max(last.get(stream, 0), parse(stream, orjson.dumps(record), now_ms=NOW_MS).ts_ms)
            except InvalidEvent:
                continue
        for stream, ts_ms in last.items():
            mark = orjson.dumps({"watermark": ts_ms + end_watermark_after_ms})
            for partition in range(settings.partitions):
                offset = offsets[(stream, partition)] = offsets.get((stream, partition), -1) + 1
                pipeline.feed(stream, partition, [RawRecord(offset, mark)], NOW_MS)
        pipeline.tick(NOW_MS)
        return [orjson.loads(value) for _, _, value in kpi_results.records("kpi-results", pipeline.results, NOW_MS)]
    # Every partition of every stream goes idle, so every stream is quiet: its clock starts at its
    # largest watermark and moves with the wall clock; a day later every window has closed.
    pipeline.tick(NOW_MS)
    for source in pipeline.sources.values():
        for engine in source.engines.values():
            engine.watermark.last_arrival_wall_ms = 0
    pipeline.tick(FAR_FUTURE_MS)
    pipeline.tick(FAR_FUTURE_MS + DAY_MS)
    return [orjson.loads(value) for _, _, value in kpi_results.records("kpi-results", pipeline.results, NOW_MS)]


def _key(stream: str, payload: bytes) -> bytes | None:
    """The record's Kafka key as the producer sets it; None for a payload that does not parse
    (it is dead-lettered wherever it lands)."""
    try:
        return key_of(stream, parse(stream, payload, now_ms=NOW_MS).event).encode()
    except InvalidEvent:
        return None
