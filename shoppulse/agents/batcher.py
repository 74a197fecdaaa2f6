"""Batching and acks: events are processed in batches and acked only once the batch's writes
are acknowledged by the broker."""

from __future__ import annotations

import asyncio

import faust


async def flush_writes(app: faust.App) -> None:
    """Wait until every table write and send made so far is acknowledged by the broker.

    Faust commits the offsets of acked events without waiting for their table writes, and
    its own `producer.flush()` gives up on the write buffer after 0.1 s without progress
    (`ProducerBuffer.flush_atmost`). Either can let a rebalance or a crash hand a partition on
    with its offsets committed but its last state writes still in this process, and then
    those events are lost. So the buffer is drained here until empty, before any ack."""
    buffer = app.producer.buffer
    while buffer.size:
        await buffer.flush()
    await app.producer.flush()


class Batcher:
    """Collects events into batches of at most `size`; `flush` (also periodically) processes,
    waits until the batch's writes are durable, and acks."""

    def __init__(self, size: int, process, app: faust.App):
        self.size = size
        self.process = process
        self.app = app
        self.events: list[faust.EventT] = []
        self.stream: faust.StreamT | None = None
        self.lock = asyncio.Lock()  # one batch at a time, in arrival order

    def flush_periodically(self, interval: float):
        """A Faust task flushing partial batches. Not a Faust timer: a batch may take longer
        than the interval, which is expected under load, not worth a warning."""

        async def run() -> None:
            while True:
                await asyncio.sleep(interval)
                await self.flush()

        return run

    async def add(self, stream: faust.StreamT, event: faust.EventT) -> None:
        self.stream = stream
        self.events.append(event)
        if len(self.events) >= self.size:
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            events, self.events = self.events, []
            if not events or self.stream is None:
                return
            await self.process(self.stream, events)
            await flush_writes(self.app)
            for event in events:
                event.ack()
