"""`shoppulse worker`: create the topics, serve /metrics and run the Faust worker."""

from __future__ import annotations

import argparse
import asyncio
import gc

from ..settings import Settings
from .common import add_broker_option, add_config_option, console, settings_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("worker", help="run the KPI worker (several workers share the partitions)")
    add_broker_option(p)
    p.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (default 9464)")
    p.add_argument("--metrics-host", help="bind address for /metrics (default 0.0.0.0)")
    p.add_argument("--data-dir", help="local state directory (RocksDB; default var/worker)")
    p.add_argument(
        "--idle-timeout",
        type=float,
        help="seconds of silence before a partition's watermark follows the wall clock (default 30)",
    )
    p.add_argument("--grace", type=float, help="seconds a window stays open after its end (default 30)")
    p.add_argument("--partitions", type=int, help="partitions per topic (default 4)")
    p.add_argument("--app-id", help="consumer group and changelog prefix (default shoppulse)")
    add_config_option(p)
    p.set_defaults(run=run)


# The cyclic GC's full collections walk every object the worker holds (open sessions, windows,
# the merge state: hundreds of MB), 0.1-0.25 s each and every 3-5 s at 5k events/s live, and
# found nothing to free: the state is freed by reference counting. Young collections stay
# frequent, full ones become rare (docs/performance.md, "Latency: the live path").
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Rare full collections, and the objects of start-up (modules, the app) never walked again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(args: argparse.Namespace) -> int:
    run_worker(settings_from_args(args))
    return 0


def run_worker(settings: Settings) -> None:
    """Create topics, serve /metrics, and run the Faust worker until SIGINT/SIGTERM."""
    # Faust is imported here, not at the top: the other commands start without loading it.
    from faust.worker import Worker

    from ..agents.app import create_app
    from ..kafka.admin import ensure_topics

    asyncio.run(ensure_topics(settings))
    worker = create_app(settings)
    worker.metrics.serve(settings.metrics_host, settings.metrics_port)
    console.print(
        f"shoppulse worker on {settings.broker}; metrics on http://{settings.metrics_host}:{settings.metrics_port}/metrics"
    )
    faust_worker = Worker(worker.app, loglevel="warn", quiet=True, redirect_stdouts=False)
    # Faust's terminal spinner sets the root logger to DEBUG to spin on every record: 3 log
    # records per event, formatted and discarded, cost about a fifth of the throughput.
    faust_worker.spinner = None
    tune_gc()
    faust_worker.execute_from_commandline()
