"""The runner: the simulator's events into a sink, on a real-time or a synthetic clock, with
a progress bar; `generate_traffic` is what `shoppulse generate` runs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ...settings import Settings
from ..sink import EventSink, JsonlSink, KafkaSink
from .model import GeneratorConfig
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


def generate_traffic(
    settings: Settings, config: GeneratorConfig, *, duration_s: float | None, out: str | None
) -> Counter[tuple[str, str]]:
    """Generate into `settings.broker` in real time, or into the JSONL file `out` as fast as it
    goes, until `duration_s` passes (required with `out`) or SIGINT/SIGTERM; returns counts by
    (stream, event_type)."""

    async def main() -> Counter[tuple[str, str]]:
        # Inside the loop: aiokafka's producer must be created within a running event loop.
        sink: EventSink = JsonlSink(out) if out else KafkaSink(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with sink:
            return await run(config, sink, duration_s=duration_s, realtime=not out, stop=stop)

    return asyncio.run(main())
