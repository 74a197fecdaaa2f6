"""The agents' batcher acks a batch only once the batch's writes are acknowledged by the broker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from shoppulse.agents.source import Batcher


class GivingUpBuffer:
    """Like Faust's ProducerBuffer: one `flush()` call may return with messages still buffered
    (Faust's gives up after 0.1 s without progress)."""

    def __init__(self) -> None:
        self.size = 0

    async def flush(self) -> None:
        if self.size:
            self.size -= 1


class Producer:
    def __init__(self) -> None:
        self.buffer = GivingUpBuffer()
        self.in_flight = 0  # handed to the Kafka client, not yet acknowledged

    async def flush(self) -> None:
        self.in_flight = 0


class Event:
    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.pending_at_ack: tuple[int, int] | None = None

    def ack(self) -> None:
        self.pending_at_ack = (self.producer.buffer.size, self.producer.in_flight)


def test_events_are_acked_only_after_their_writes_are_acknowledged():
    producer = Producer()
    processed: list[int] = []

    async def process(stream, events) -> None:
        processed.append(len(events))
        producer.buffer.size += 3 * len(events)  # table writes queued by Faust
        producer.in_flight += 2  # partials and changelog batches sent, not yet acknowledged

    batcher = Batcher(4, process, SimpleNamespace(producer=producer))
    events = [Event(producer) for _ in range(6)]

    async def run() -> None:
        for event in events:
            await batcher.add(stream=object(), event=event)
        await batcher.flush()

    asyncio.run(run())
    assert processed == [4, 2]
    assert [e.pending_at_ack for e in events] == [(0, 0)] * 6
