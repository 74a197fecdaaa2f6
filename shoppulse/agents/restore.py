"""Opening tasks: fence the partitions' earlier owners, bring the local copy of their changelogs
up to date (agents/localstate.py), restore their state from it, and seek to their committed
offsets, in that order (the changelog's end and the committed offset are read after the fence,
so they belong to the same last committed checkpoint).

A copy that can be trusted is brought up to date by reading only the changelog's tail, from the
offset it reflects; otherwise it is emptied and the changelog is read from its start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from .localstate import LocalChangelogs
from .task import PartitionTask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restored:
    """How one changelog partition was brought up to date."""

    changelog: TopicPartition
    full: bool  # read from its start (no trusted local copy)
    records: int  # changelog records read
    seconds: float


async def catch_up(
    reader: AIOKafkaConsumer, local: LocalChangelogs, tps: Sequence[TopicPartition], timeout: float = 120.0
) -> list[Restored]:
    """Bring the local copies of the changelog partitions to their last stable offsets
    (`reader` is a read_committed consumer without a group)."""
    if not tps:
        return []
    started = time.monotonic()
    reader.assign(list(tps))
    starts = await reader.beginning_offsets(list(tps))
    ends = await reader.end_offsets(list(tps))
    now_ms = int(time.time() * 1000)
    full: set[TopicPartition] = set()
    for tp in tps:
        offset = local.trusted_offset(tp, starts[tp], ends[tp], now_ms)
        if offset is None:
            local.wipe(tp)
            full.add(tp)
            offset = starts[tp]
        reader.seek(tp, offset)
    records = dict.fromkeys(tps, 0)
    deadline = time.monotonic() + timeout
    pending = {tp for tp in tps if await reader.position(tp) < ends[tp]}
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"restoring {sorted(map(str, pending))} took over {timeout:.0f} s")
        # A short wait: a copy written after its checkpoint's last row still has that
        # checkpoint's commit marker to pass, a fetch that returns no record (500 ms: 0.45 s
        # of each restart's 3 s with a small state).
        batch = await reader.getmany(*pending, timeout_ms=50)
        for tp, messages in batch.items():
            rows = [(m.key, m.value) for m in messages if m.key is not None]
            records[tp] += len(messages)
            # The copy is consistent after every batch: a restore cut short goes on from here.
            local.write(tp, rows, messages[-1].offset + 1, now_ms)
        pending = {tp for tp in pending if await reader.position(tp) < ends[tp]}
    for tp in tps:
        local.write(tp, (), ends[tp], now_ms)  # past the last commit marker
    seconds = time.monotonic() - started
    return [Restored(tp, tp in full, records[tp], seconds) for tp in tps]


async def open_tasks(
    tasks: Sequence[PartitionTask], reader: AIOKafkaConsumer, consumer: AIOKafkaConsumer, local: LocalChangelogs
) -> list[Restored]:
    """Open created or suspended tasks: afterwards each is RUNNING, positioned at its committed
    offset. On an error the caller suspends them and tries again."""
    await asyncio.gather(*(task.start_producer() for task in tasks))
    restored = await catch_up(reader, local, [task.changelog for task in tasks])
    for r in restored:
        kind = "in full" if r.full else "from the local copy and the changelog's tail"
        log.info("restored %s %s: %d changelog records read in %.1f s", r.changelog, kind, r.records, r.seconds)
    offsets = await asyncio.gather(*(consumer.committed(task.tp) for task in tasks))
    # Rebuilding a large state takes seconds (a million rows: 15-20 s on a loaded 2-core
    # machine), and the group's heartbeats run on this event loop: the engines are rebuilt in a
    # thread meanwhile. The data plane's lock keeps every other user of these tasks and of the
    # cold store waiting.
    await asyncio.to_thread(_rebuild, tasks, offsets, local)
    for task, committed in zip(tasks, offsets):
        if committed is None:
            await consumer.seek_to_beginning(task.tp)
        else:
            consumer.seek(task.tp, committed)
    return restored


def _rebuild(tasks: Sequence[PartitionTask], offsets: Sequence[int | None], local: LocalChangelogs) -> None:
    for task, committed in zip(tasks, offsets):
        task.restore(local.rows(task.changelog), committed)
