"""`shoppulse replay`: a real-world data file into Kafka, then the counts sent per event type."""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from pathlib import Path

from ..errors import UserError
from ..settings import Settings
from ..tools.replay import FORMATS, replay
from ..tools.sink import KafkaSink
from .common import add_broker_option, add_config_option, settings_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("replay", help="replay a real-world data file into Kafka")
    p.add_argument("format", choices=FORMATS)
    p.add_argument("file")
    add_broker_option(p)
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--speed", type=float, help="replay N times faster than event time")
    speed.add_argument("--max-speed", action="store_true", help="replay as fast as possible (the default)")
    p.add_argument("--rebase-time", action="store_true", help="shift timestamps so the first event is now")
    p.add_argument(
        "--topic", choices=("clickstream", "orders", "tickets"), help="jsonl: stream of lines without a `topic` field"
    )
    p.add_argument("--partitions", type=int, help="partitions for topics it creates (default 4)")
    p.add_argument(
        "--no-end-watermark",
        dest="end_watermark",
        action="store_false",
        help="do not end each topic with watermark records (use it when live producers write to the same "
        "topics: a replay's end must not make their events late)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"No such file: {path}")
    settings = settings_from_args(args)
    speed = None if args.max_speed or args.speed is None else args.speed

    async def send() -> Counter:
        async with KafkaSink(settings) as sink:
            return await replay(
                args.format,
                path,
                sink,
                speed=speed,
                rebase_time=args.rebase_time,
                show_progress=not args.quiet,
                topic=args.topic,
                end_watermark_after_ms=end_watermark_after_ms(settings) if args.end_watermark else None,
            )

    for (stream, event_type), n in sorted(asyncio.run(send()).items()):
        print(f"{stream:12} {event_type:20} {n}")
    return 0


def end_watermark_after_ms(settings: Settings) -> int:
    """How far past a stream's last event its end watermark goes: past the last session's
    timeout and the largest window containing the last event, plus the grace, so that every
    window and session of the replay is final."""
    span_s = max(settings.session_timeout_seconds, max(settings.windows_seconds))
    return int((span_s + settings.grace_seconds + 1) * 1000)
