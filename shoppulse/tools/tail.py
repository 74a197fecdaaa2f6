"""`shoppulse tail`: follow the kpi-results topic, pretty-printed or as JSON lines.

`follow_results` is the reusable part: the records exactly as published (the output
contract in docs/kpis.md), for anything that wants to watch results live.
"""

from __future__ import annotations

import asyncio
import difflib
import signal
import sys
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError
from rich.console import Console
from rich.text import Text

from ..errors import UserError
from ..kafka.admin import diagnose
from ..kafka.options import client_options
from ..settings import Settings, window_label
from ..streams.goals import format_value
from ..streams.kpis import BY_KEY, CATALOGUE

POLL_MS = 500  # how often a quiet consumer looks at `stop`
CONNECT_TIMEOUT_S = 20.0
YIELD_EVERY = 200  # records between two looks at `stop` within a batch


class TailError(UserError):
    """A bad `tail` option (unknown KPI or window); the message lists the choices."""


async def follow_results(
    settings: Settings, *, from_beginning: bool = False, stop: asyncio.Event | None = None
) -> AsyncGenerator[dict, None]:
    """Yield kpi-results records as they arrive, until `stop` is set (or forever).

    from_beginning: start with the oldest record still on the topic; otherwise only new ones.
    No consumer group: every follower sees every record. Raises BrokerUnreachable.
    """
    consumer = AIOKafkaConsumer(
        settings.topics.results,
        bootstrap_servers=settings.broker,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        metadata_max_age_ms=5000,  # a results topic created after we started shows up within seconds
        **client_options(settings.security),
    )
    try:
        await asyncio.wait_for(consumer.start(), CONNECT_TIMEOUT_S)
    except (TimeoutError, KafkaConnectionError, OSError):
        await consumer.stop()
        raise await diagnose(settings) from None
    try:
        while stop is None or not stop.is_set():
            batch = await consumer.getmany(timeout_ms=POLL_MS)
            for messages in batch.values():
                for n, message in enumerate(messages):
                    # A batch from the beginning can hold tens of thousands of records: now and
                    # then let the loop run its callbacks (Ctrl-C sets `stop`), and stop at once.
                    if n % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                        if stop is not None and stop.is_set():
                            return
                    yield orjson.loads(message.value)
    finally:
        await consumer.stop()


# ------------------------------------------------------------------ the command


@dataclass(frozen=True)
class ResultFilter:
    """Which records `tail` prints: one KPI, one window size, only finals (None, False: all)."""

    kpi: str | None = None
    window: str | None = None
    final_only: bool = False

    def check(self, settings: Settings) -> None:
        """Raise TailError for a KPI or a window size that does not exist, naming the choices."""
        if self.kpi is not None and self.kpi not in BY_KEY:
            close = difflib.get_close_matches(self.kpi, list(BY_KEY), n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise TailError(f"--kpi: unknown KPI `{self.kpi}`.{hint} The KPIs: {', '.join(k.key for k in CATALOGUE)}")
        labels = [window_label(s) for s in sorted(settings.windows_seconds)]
        if self.window is not None and self.window not in labels:
            raise TailError(f"--window: no `{self.window}` window; the configured windows are {', '.join(labels)}")

    def wants(self, record: dict) -> bool:
        return (
            (not self.final_only or record.get("final") is True)
            and (self.kpi is None or record.get("kpi") == self.kpi)
            and (self.window is None or record.get("window") == self.window)
        )


def tail(
    settings: Settings,
    wanted: ResultFilter,
    *,
    as_json: bool,
    from_beginning: bool,
    max_records: int | None,
    idle_exit_s: float | None,
) -> None:
    """Print the `wanted` kpi-results records (pretty, or as JSON lines) until Ctrl-C, or until
    `max_records` were printed or none was for `idle_exit_s` seconds. Raises TailError."""
    wanted.check(settings)
    out = Console(soft_wrap=True, highlight=False)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)  # Ctrl-C: leave the loop, close the consumer, exit 0
        last_printed = time.monotonic()
        watchdog = asyncio.create_task(_stop_when_idle(idle_exit_s, lambda: last_printed, stop))
        printed = 0
        try:
            async with aclosing(follow_results(settings, from_beginning=from_beginning, stop=stop)) as records:
                async for record in records:
                    if not wanted.wants(record):
                        continue
                    if as_json:
                        sys.stdout.buffer.write(orjson.dumps(record) + b"\n")
                        sys.stdout.flush()
                    else:
                        out.print(pretty(record))
                    printed += 1
                    last_printed = time.monotonic()
                    if max_records is not None and printed >= max_records:
                        break
        finally:
            watchdog.cancel()

    asyncio.run(main())


async def _stop_when_idle(idle_s: float | None, last_printed: Callable[[], float], stop: asyncio.Event) -> None:
    if idle_s is None:
        return
    while not stop.is_set():
        remaining = idle_s - (time.monotonic() - last_printed())
        if remaining <= 0:
            stop.set()
        else:
            await asyncio.sleep(min(remaining, POLL_MS / 1000))


def pretty(record: dict) -> Text:
    """One line: window start–end (UTC), window, KPI, dimensions, value (and numerator/denominator), final or open."""
    start, end = record["window_start"], record["window_end"]  # RFC 3339 UTC: date at [:10], time at [11:19]
    kpi = record["kpi"]
    value = record["value"]
    shown = format_value(kpi, value) if kpi in BY_KEY else str(value)
    dims = " ".join(f"{k}={v}" for k, v in record["dimensions"].items())
    line = Text()
    line.append(f"{start[:10]} {start[11:19]}–{end[11:19]} ", style="dim")
    line.append(f"{record['window']:>3} ", style="cyan")
    line.append(f"{kpi:<36} ", style="bold")
    line.append(f"{dims:<24} ", style="magenta")
    line.append(f"{shown:>12}", style="green" if value is not None else "yellow")
    if "denominator" in record:
        line.append(f"  {record['numerator']:,.6g}/{record['denominator']:,.6g}", style="dim")
    line.append("  final" if record["final"] else "  open", style="bold green" if record["final"] else "dim")
    return line
