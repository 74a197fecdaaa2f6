"""Consumer lag: log end offsets against where this worker stands, every few seconds."""

from __future__ import annotations

import asyncio

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ..kafka.options import bootstrap_servers, client_options
from ..settings import Settings
from .source import SourcePipeline

# Consumer lag is re-read from the broker this often, so it keeps rising while nothing is
# processed (a stuck or starved worker), which is what the gauge is for.
LAG_REFRESH_SECONDS = 5.0
LAG_TIMEOUT_SECONDS = 10.0


def consumer_lag_task(app: faust.App, settings: Settings, sources: list[SourcePipeline]):
    """A Faust task: every few seconds, log end offsets (read with a client of its own, never
    through Faust's consumer thread, whose two workers also fetch) against the offset after
    the last event processed here, or the group's committed offset before any. So the gauge
    keeps rising when nothing is processed: a stuck or starved worker."""

    async def run() -> None:
        reader = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(settings.broker),
            enable_auto_commit=False,
            **client_options(settings.security),
        )
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers(settings.broker), **client_options(settings.security)
        )
        started = False
        try:
            while True:
                await asyncio.sleep(LAG_REFRESH_SECONDS)
                try:
                    if not started:
                        await asyncio.wait_for(asyncio.gather(reader.start(), admin.start()), LAG_TIMEOUT_SECONDS)
                        started = True
                    for source in sources:
                        await asyncio.wait_for(source.refresh_lag(reader, admin), LAG_TIMEOUT_SECONDS)
                except (TimeoutError, KafkaError, OSError):  # unreachable: keep the last figures
                    continue
        finally:
            await asyncio.gather(reader.stop(), admin.close(), return_exceptions=True)

    return run
