"""Where replayed or generated events go: a Kafka broker or a JSONL file."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import BinaryIO

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from ..errors import UserError
from ..kafka.admin import diagnose, ensure_topics
from ..kafka.options import client_options
from ..settings import Settings
from ..streams.events import Event, encode, key_of


class EventSink:
    """Async sink. `send(stream, event)` and `send_raw(topic, key, value)`; counts what it sent."""

    def __init__(self) -> None:
        self.sent: Counter[tuple[str, str]] = Counter()  # (stream, event_type) -> count

    async def __aenter__(self) -> EventSink:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, stream: str, event: Event) -> None:
        self.sent[(stream, event.event_type)] += 1
        await self.write(stream, key_of(stream, event).encode(), encode(event))

    async def write(self, stream: str, key: bytes, value: bytes) -> None:
        raise NotImplementedError

    async def watermark(self, stream: str, ts_ms: int) -> int:
        """A watermark record (events.py `WatermarkRecord`) to every partition of the stream's
        topic; returns how many were sent. A file has no partitions: none by default."""
        return 0


class KafkaSink(EventSink):
    """Produces to the configured source topics, creating them first if needed."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.broker,
            linger_ms=20,
            max_batch_size=256 * 1024,
            acks="all",
            enable_idempotence=True,
            **client_options(settings.security),
        )
        self._pending: list[asyncio.Future] = []

    async def start(self) -> None:
        try:
            await ensure_topics(self.settings)
            try:
                await self.producer.start()
            except KafkaConnectionError:
                raise await diagnose(self.settings) from None
        except BaseException:
            await self.producer.stop()  # or aiokafka warns of an unclosed producer
            raise

    async def write(self, stream: str, key: bytes, value: bytes) -> None:
        self._pending.append(await self.producer.send(self.settings.topics.source(stream), value, key=key))
        if len(self._pending) >= 5000:
            await self.flush()

    async def watermark(self, stream: str, ts_ms: int) -> int:
        topic = self.settings.topics.source(stream)
        value = orjson.dumps({"watermark": ts_ms})
        partitions = sorted(await self.producer.partitions_for(topic))
        for partition in partitions:
            self._pending.append(await self.producer.send(topic, value, partition=partition))
        return len(partitions)

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)

    async def stop(self) -> None:
        try:
            await self.flush()
        finally:
            await self.producer.stop()


class JsonlSink(EventSink):
    """One canonical event per line, with a `topic` field naming its stream (for `replay jsonl`)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._file: BinaryIO | None = None

    async def start(self) -> None:
        try:
            self._file = self.path.open("wb")
        except OSError as exc:  # no such folder, no permission: the user's to fix
            raise UserError(str(exc)) from None

    async def write(self, stream: str, key: bytes, value: bytes) -> None:
        assert self._file is not None
        record = orjson.loads(value)
        record["topic"] = stream
        self._file.write(orjson.dumps(record) + b"\n")

    async def stop(self) -> None:
        if self._file:
            self._file.close()
