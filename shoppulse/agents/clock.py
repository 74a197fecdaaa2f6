"""The stream clocks' transport (the rule is in streams/clock.py): the merging worker publishes
them to the `<app_id>-clock` topic (agents/merge_task.py `MergeTask`), and every worker reads
that topic with a consumer of its own, outside the consumer group, since every worker needs
every record.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from ..kafka.options import bootstrap_servers, client_options
from ..settings import Settings
from ..streams.clock import CLOCK_KEY, decode_clocks
from ..topics import clock_topic

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class ClockReader:
    """The latest stream clocks published by the merging worker (`clocks`: stream -> ms)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.clocks: dict[str, int] = {}

    def task(self):
        """A Faust task: read the clock topic from its last record on, for as long as the worker runs."""

        async def run() -> None:
            while True:
                try:
                    await self._read()
                except (KafkaError, OSError) as exc:  # the broker went away: the clocks stay as they were
                    log.warning("clock topic: %s; retrying in %.0f s", exc, RETRY_SECONDS)
                    await asyncio.sleep(RETRY_SECONDS)

        return run

    async def _read(self) -> None:
        settings = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(settings.broker),
            enable_auto_commit=False,
            **client_options(settings.security),
        )
        await consumer.start()
        try:
            tp = TopicPartition(clock_topic(settings), 0)
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            consumer.seek(tp, max(0, end - 1))  # each record holds every stream's clock: the last one will do
            while True:
                for message in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if message.key == CLOCK_KEY and message.value is not None:
                        self.clocks = decode_clocks(message.value)
        finally:
            await consumer.stop()
