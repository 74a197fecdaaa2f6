"""`shoppulse kafka`: a local single-node Apache Kafka (KRaft) on 127.0.0.1, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from types import FrameType

from ..kafka.broker import KafkaSetupError, LocalKafka, cache_dir
from ..tools.jars import fetch_jars_with_progress
from .common import console


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("kafka", help="run a local single-node Apache Kafka (KRaft) on 127.0.0.1")
    p.add_argument("--port", type=int, default=9092, help="client port (0 picks a free one; default 9092)")
    p.add_argument("--data-dir", help=f"broker data directory (default {cache_dir() / 'kafka-data'})")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    fetch_jars_with_progress(console)
    data_dir = Path(args.data_dir) if args.data_dir else cache_dir() / "kafka-data"
    broker = LocalKafka(port=args.port, data_dir=data_dir)
    started = time.monotonic()
    broker.start()
    print(
        f"Kafka {broker.bootstrap} ready in {time.monotonic() - started:.1f} s (data: {data_dir}). Ctrl-C stops it.",
        flush=True,
    )
    stop = {"now": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop["now"] and broker.process and broker.process.poll() is None:
            time.sleep(0.2)
    finally:
        broker.stop()
    if broker.process and broker.process.returncode not in (0, -15, 143, None) and not stop["now"]:
        raise KafkaSetupError(f"Kafka exited with code {broker.process.returncode}; see {data_dir / 'server.log'}")
    console.print("Kafka stopped.")
    return 0
