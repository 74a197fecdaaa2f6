"""`shoppulse tail`: follow the kpi-results topic, pretty-printed or as JSON lines.

`follow_results` is the reusable part: the records exactly as published (the output
contract in docs/kpis.md), for anything that wants to watch results live.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import signal
import sys
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

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


# ------------------------------------------------------------------ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `shoppulse tail` options; cli/tail.py adds --broker and --config and calls `command`."""
    parser.add_argument("--kpi", metavar="KEY", help="only this KPI (a key from docs/kpis.md, e.g. conversion_rate)")
    parser.add_argument("--window", metavar="SIZE", help="only this window size, e.g. 1m, 5m, 1h")
    parser.add_argument("--final-only", action="store_true", help="only the one final record of each window")
    parser.add_argument("--json", action="store_true", help="print the records as JSON lines, as on the topic")
    parser.add_argument("--from-beginning", action="store_true", help="start with the oldest record on the topic")
    parser.add_argument("--max-records", type=int, metavar="N", help="exit after printing N records")
    parser.add_argument("--idle-exit", type=float, metavar="S", help="exit when no record was printed for S seconds")


def command(args: argparse.Namespace, settings: Settings) -> int:
    _check_filters(args, settings)
    out = Console(soft_wrap=True, highlight=False)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)  # Ctrl-C: leave the loop, close the consumer, exit 0
        last_printed = time.monotonic()
        watchdog = asyncio.create_task(_stop_when_idle(args.idle_exit, lambda: last_printed, stop))
        printed = 0
        try:
            async with aclosing(follow_results(settings, from_beginning=args.from_beginning, stop=stop)) as records:
                async for record in records:
                    if not _wanted(record, args):
                        continue
                    if args.json:
                        sys.stdout.buffer.write(orjson.dumps(record) + b"\n")
                        sys.stdout.flush()
                    else:
                        out.print(pretty(record))
                    printed += 1
                    last_printed = time.monotonic()
                    if args.max_records is not None and printed >= args.max_records:
                        break
        finally:
            watchdog.cancel()

    asyncio.run(main())
    return 0


async def _stop_when_idle(idle_s: float | None, last_printed: Callable[[], float], stop: asyncio.Event) -> None:
    if idle_s is None:
        return
    while not stop.is_set():
        remaining = idle_s - (time.monotonic() - last_printed())
        if remaining <= 0:
            stop.set()
        else:
            await asyncio.sleep(min(remaining, POLL_MS / 1000))


def _check_filters(args: argparse.Namespace, settings: Settings) -> None:
    if args.kpi is not None and args.kpi not in BY_KEY:
        close = difflib.get_close_matches(args.kpi, list(BY_KEY), n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise TailError(f"--kpi: unknown KPI `{args.kpi}`.{hint} The KPIs: {', '.join(k.key for k in CATALOGUE)}")
    labels = [window_label(s) for s in sorted(settings.windows_seconds)]
    if args.window is not None and args.window not in labels:
        raise TailError(f"--window: no `{args.window}` window; the configured windows are {', '.join(labels)}")


def _wanted(record: dict, args: argparse.Namespace) -> bool:
    return (
        (not args.final_only or record.get("final") is True)
        and (args.kpi is None or record.get("kpi") == args.kpi)
        and (args.window is None or record.get("window") == args.window)
    )


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
