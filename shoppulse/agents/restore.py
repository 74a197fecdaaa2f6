"""Opening tasks: fence the partitions' earlier owners, restore their state from the changelog,
and seek to their committed offsets, in that order (the committed offset is read after the
fence, so it belongs to the same checkpoint as the restored state)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from .task import PartitionTask


async def read_changelog(
    reader: AIOKafkaConsumer, tps: Sequence[TopicPartition], timeout: float = 120.0
) -> dict[TopicPartition, dict[bytes, bytes]]:
    """The latest value of every key of the changelog partitions, read_committed to their last
    stable offset (`reader` is a read_committed consumer without a group)."""
    rows: dict[TopicPartition, dict[bytes, bytes]] = {tp: {} for tp in tps}
    if not tps:
        return rows
    reader.assign(list(tps))
    await reader.seek_to_beginning(*tps)
    ends = await reader.end_offsets(list(tps))
    deadline = time.monotonic() + timeout
    pending = {tp for tp in tps if ends[tp] > 0}
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"restoring {sorted(map(str, pending))} took over {timeout:.0f} s")
        batch = await reader.getmany(*pending, timeout_ms=500)
        for tp, records in batch.items():
            table = rows[tp]
            for record in records:
                if record.key is None:
                    continue
                if record.value is None:
                    table.pop(record.key, None)
                else:
                    table[record.key] = record.value
        pending = {tp for tp in pending if await reader.position(tp) < ends[tp]}
    return rows


async def open_tasks(tasks: Sequence[PartitionTask], reader: AIOKafkaConsumer, consumer: AIOKafkaConsumer) -> None:
    """Open created or suspended tasks: afterwards each is RUNNING, positioned at its committed
    offset. On an error the caller suspends them and tries again."""
    await asyncio.gather(*(task.start_producer() for task in tasks))
    rows = await read_changelog(reader, [task.changelog for task in tasks])
    offsets = await asyncio.gather(*(consumer.committed(task.tp) for task in tasks))
    for task, committed in zip(tasks, offsets):
        task.restore(rows[task.changelog], committed)
        if committed is None:
            await consumer.seek_to_beginning(task.tp)
        else:
            consumer.seek(task.tp, committed)
