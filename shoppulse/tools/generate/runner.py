"""The runner: the simulator's events into a sink, on a real-time or a synthetic clock, with
a progress bar; and the `shoppulse generate` options and command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ...settings import Settings
from ..sink import EventSink, JsonlSink, KafkaSink
from .model import SCENARIOS, GeneratorConfig
from .simulator import TrafficGenerator

TICK_MS = 100  # realtime emission granularity


def _now_ms() -> int:
    return int(time.time() * 1000)


async def run(
    config: GeneratorConfig,
    sink: EventSink,
    *,
    duration_s: float | None,
    realtime: bool,
    start_ms: int | None = None,
    show_progress: bool = True,
    stop: asyncio.Event | None = None,
) -> Counter[tuple[str, str]]:
    """Send generated events to `sink`; returns counts by (stream, event_type).

    realtime: event time is the wall clock, sent in 100 ms ticks; runs until `duration_s`
    passes or `stop` is set. Otherwise: a synthetic timeline from `start_ms` (default: now,
    rounded down to the minute), as fast as the sink takes it. `config.scenario` may be
    changed while this runs.
    """
    if duration_s is None and not realtime:
        raise ValueError("an offline run needs a duration")
    if realtime:
        start = _now_ms() if start_ms is None else start_ms
    else:
        start = (_now_ms() // 60_000) * 60_000 if start_ms is None else start_ms
    end = None if duration_s is None else start + int(duration_s * 1000)
    generator = TrafficGenerator(config, start)
    counts: Counter[tuple[str, str]] = Counter()
    progress = Progress(
        TextColumn("[bold]generate[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s" if duration_s else "{task.completed:.0f} s"),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=False,
    )
    with progress:
        task = progress.add_task("", total=duration_s)
        clock = start
        while (end is None or clock < end) and not (stop is not None and stop.is_set()):
            if realtime:
                target = _now_ms() if end is None else min(_now_ms(), end)
            else:
                target = clock + 1000 if end is None else min(clock + 1000, end)
            for stream, event in generator.advance(target):
                await sink.send(stream, event)
                counts[(stream, event.event_type)] += 1
            clock = target
            description = f"{sum(counts.values()):,} events ({generator.scenario})"
            progress.update(task, completed=(clock - start) / 1000, description=description)
            if realtime:
                await _sleep_or_stop(TICK_MS / 1000, stop)
            else:
                await asyncio.sleep(0)  # let other tasks (a stop signal) run
    return counts


async def _sleep_or_stop(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# ------------------------------------------------------------------ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `shoppulse generate` options; cli/generate.py adds --config and calls `command`."""
    parser.add_argument(
        "--rate", type=float, default=50.0, metavar="EV_PER_S", help="target events per second, all topics"
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="seconds to run (default: until Ctrl-C; 600 with --out)"
    )
    parser.add_argument("--seed", type=int, default=1, metavar="N")
    parser.add_argument("--scenario", choices=SCENARIOS, default="normal")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--broker", metavar="URL", help="Kafka bootstrap server (default from settings); events are sent in real time"
    )
    target.add_argument(
        "--out", metavar="FILE.jsonl", help="write a synthetic timeline to a JSONL file, as fast as possible"
    )


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Generate into `settings.broker` in real time, or with --out into a file as fast as it goes."""
    config = GeneratorConfig(rate=args.rate, seed=args.seed, scenario=args.scenario)
    console = Console(stderr=True)
    if args.out:
        duration, realtime = (600.0 if args.duration is None else args.duration), False
    else:
        duration, realtime = args.duration, True

    async def main() -> Counter[tuple[str, str]]:
        # Inside the loop: aiokafka's producer must be created within a running event loop.
        sink: EventSink = JsonlSink(args.out) if args.out else KafkaSink(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with sink:
            return await run(config, sink, duration_s=duration, realtime=realtime, stop=stop)

    counts = asyncio.run(main())
    by_stream: Counter[str] = Counter()
    for (stream, _), n in counts.items():
        by_stream[stream] += n
    summary = ", ".join(f"{stream} {n:,}" for stream, n in sorted(by_stream.items()))
    console.print(f"sent {sum(counts.values()):,} events ({summary})" + (f" to {args.out}" if args.out else ""))
    return 0
