"""Peer (b) of bench/throughput.py: an empty faust-streaming agent on the worker's source topics.

    .venv/bin/python bench/peers/faust_empty.py --broker HOST:PORT --group APP_ID \
        --topics T1,T2,T3 --progress FILE --data-dir DIR

One Faust app (the group is its app id) with one agent subscribed to all source topics; the
agent only counts what it is given (raw bytes: no deserialisation, no state, no output). So
what it reaches is the cost of Faust's per-message path itself: consumer, conductor, channel
queue, stream iteration, acks and commits. Faust's settings are its defaults except those the
shoppulse worker sets too (no web server, `auto_offset_reset=earliest`, the terminal spinner
off, log level warn) and an in-memory store. It runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
from typing import Any

import faust
from _progress import Progress
from faust.worker import Worker


def build(args: argparse.Namespace, progress: Progress) -> faust.App:
    app = faust.App(
        args.group,
        broker=f"kafka://{args.broker}",
        store="memory://",
        datadir=args.data_dir,
        web_enabled=False,
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
    )
    topics = app.topic(*args.topics.split(","), key_serializer="raw", value_serializer="raw")

    @app.agent(topics)
    async def drain(stream) -> None:
        async for _value in stream:
            progress.add()

    @app.timer(progress.interval)
    async def report() -> None:
        progress.write()

    @app.on_before_shutdown.connect
    async def last_report(_app: Any, /, *_args: Any, signal: Any, **_kwargs: Any) -> None:
        progress.write()

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", required=True, metavar="HOST:PORT")
    parser.add_argument("--group", required=True, help="consumer group = Faust app id")
    parser.add_argument("--topics", required=True, help="comma-separated source topics")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--progress", required=True, metavar="FILE")
    parser.add_argument("--data-dir", required=True, metavar="DIR")
    args = parser.parse_args()
    progress = Progress(args.progress)
    progress.write()
    worker = Worker(build(args, progress), loglevel="warn", quiet=True, redirect_stdouts=False)
    worker.spinner = None  # as shoppulse's run_worker: the spinner sets the root logger to DEBUG
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
