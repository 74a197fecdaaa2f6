"""`shoppulse` command line. Expected failures print a message saying what to do, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ..config import ENV_PREFIX, NOT_SETTINGS, check_config, load_settings
from ..errors import SettingsError
from ..kafka.admin import BrokerUnreachable, PartitionMismatch
from ..kafka.broker import KafkaSetupError, LocalKafka, cache_dir, ensure_jars, jars_dir
from ..outputs.prometheus import PortInUse
from ..settings import Settings
from ..tools.tail import TailError

console = Console(stderr=True, soft_wrap=True)  # long messages: let the terminal wrap, keep pipes greppable
EXPECTED_ERRORS = (
    SettingsError,
    KafkaSetupError,
    BrokerUnreachable,
    PartitionMismatch,
    PortInUse,
    FileNotFoundError,
    TailError,
)


class UserError(RuntimeError):
    """A mistake in how shoppulse was called (bad file, bad option)."""


# Flags that set a setting: argparse dest -> dotted settings key.
FLAG_SETTINGS = {
    "broker": "broker",
    "partitions": "partitions",
    "metrics_port": "metrics_port",
    "metrics_host": "metrics_host",
    "data_dir": "data_dir",
    "idle_timeout": "idle_timeout_seconds",
    "grace": "grace_seconds",
    "app_id": "app_id",
}


def _settings(args: argparse.Namespace) -> Settings:
    """Defaults, then the --config file, then SHOPPULSE_* environment variables, then flags."""
    flags = {key: getattr(args, dest) for dest, key in FLAG_SETTINGS.items() if getattr(args, dest, None) is not None}
    return load_settings(getattr(args, "config", None), flags)


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file (see shoppulse.example.toml); SHOPPULSE_* variables and flags override it",
    )


# ---------------------------------------------------------------- kafka


def fetch_jars_with_progress() -> Path:
    if (jars_dir() / ".complete").exists():
        return jars_dir()
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("Fetching Kafka jars with Maven (first run only)", total=None)

        def on_progress(done: int, line: str) -> None:
            bar.update(task, description=f"Fetching Kafka jars with Maven: {done} files")

        path = ensure_jars(on_progress)
    console.print(f"Kafka jars cached in {path}")
    return path


def cmd_kafka(args: argparse.Namespace) -> int:
    fetch_jars_with_progress()
    data_dir = Path(args.data_dir) if args.data_dir else cache_dir() / "kafka-data"
    broker = LocalKafka(port=args.port, data_dir=data_dir)
    started = time.monotonic()
    broker.start()
    print(
        f"Kafka {broker.bootstrap} ready in {time.monotonic() - started:.1f} s (data: {data_dir}). Ctrl-C stops it.",
        flush=True,
    )
    stop = {"now": False}

    def on_signal(signum, frame) -> None:
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


# ---------------------------------------------------------------- replay / generate


def cmd_replay(args: argparse.Namespace) -> int:
    from ..tools.replay import replay
    from ..tools.sink import KafkaSink

    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"No such file: {path}")
    settings = _settings(args)
    speed = None if args.max_speed or args.speed is None else args.speed

    async def run():
        async with KafkaSink(settings) as sink:
            return await replay(
                args.format,
                path,
                sink,
                speed=speed,
                rebase_time=args.rebase_time,
                show_progress=not args.quiet,
                topic=args.topic,
            )

    counts = asyncio.run(run())
    _print_counts(counts)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from ..tools import generate

    return generate.command(args, _settings(args))


def cmd_tail(args: argparse.Namespace) -> int:
    from ..tools import tail

    return tail.command(args, _settings(args))


def _print_counts(counts) -> None:
    for (stream, event_type), n in sorted(counts.items()):
        print(f"{stream:12} {event_type:20} {n}")


# ---------------------------------------------------------------- worker


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    run_worker(settings)
    return 0


def run_worker(settings: Settings, listeners=None, loglevel: str = "warn") -> None:
    """Create topics, serve /metrics, and run the Faust worker until SIGINT/SIGTERM."""
    from faust.worker import Worker

    from ..agents.app import create_app
    from ..kafka.admin import ensure_topics

    asyncio.run(ensure_topics(settings))
    worker = create_app(settings, listeners)
    worker.metrics.serve(settings.metrics_host, settings.metrics_port)
    console.print(
        f"shoppulse worker on {settings.broker}; metrics on http://{settings.metrics_host}:{settings.metrics_port}/metrics"
    )
    faust_worker = Worker(worker.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    # Faust's terminal spinner sets the root logger to DEBUG to spin on every record: 3 log
    # records per event, formatted and discarded, cost about a fifth of the throughput.
    faust_worker.spinner = None
    faust_worker.execute_from_commandline()


# ---------------------------------------------------------------- config check


def cmd_config_check(args: argparse.Namespace) -> int:
    settings, problems = check_config(args.file)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        console.print(f"[bold red]{escape(args.file)}: {count}[/]", highlight=False)
        for problem in problems:
            console.print(f"  - {escape(problem.removeprefix(f'{args.file}: '))}", highlight=False)
        return 2
    print(f"{args.file}: OK")
    for name, value in _summary(settings):
        print(f"  {name:<13} {value}")
    overriding = sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k not in NOT_SETTINGS)
    if overriding:
        print(f"  (at run time these environment variables override the file: {', '.join(overriding)})")
    return 0


def _summary(settings: Settings) -> list[tuple[str, str]]:
    from ..settings import window_label
    from ..streams.goals import goals

    sec, topics = settings.security, settings.topics
    security = sec.security_protocol + (
        f", {sec.sasl_mechanism or 'PLAIN'} as {sec.sasl_username}" if sec.security_protocol.startswith("SASL_") else ""
    )
    sla = ", ".join(f"{p} {s:g} s" for p, s in settings.sla_first_reply_seconds.items())
    return [
        ("broker", f"{settings.broker} ({security})"),
        ("app id", settings.app_id),
        (
            "topics",
            f"{topics.clickstream}, {topics.orders}, {topics.tickets} -> {topics.results} "
            f"(dead letters: {topics.dead_letters}); {settings.partitions} partitions",
        ),
        (
            "windows",
            f"{', '.join(window_label(s) for s in sorted(settings.windows_seconds))}; "
            f"grace {settings.grace_seconds:g} s, idle timeout {settings.idle_timeout_seconds:g} s, "
            f"session timeout {settings.session_timeout_seconds:g} s",
        ),
        ("first reply", f"SLA {sla}"),
        ("goals", f"{len(goals(settings))} KPIs with a goal ({len(settings.goals)} set in the file)"),
        ("metrics", f"http://{settings.metrics_host}:{settings.metrics_port}/metrics; label cap {settings.label_cap}"),
    ]


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shoppulse", description="Real-time e-commerce KPIs from Kafka.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("kafka", help="run a local single-node Apache Kafka (KRaft) on 127.0.0.1")
    p.add_argument("--port", type=int, default=9092, help="client port (0 picks a free one; default 9092)")
    p.add_argument("--data-dir", help=f"broker data directory (default {cache_dir() / 'kafka-data'})")
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser("replay", help="replay a real-world data file into Kafka")
    p.add_argument("format", choices=("rees46", "online-retail", "incident-log", "jsonl"))
    p.add_argument("file")
    p.add_argument("--broker", default=None, help="Kafka bootstrap HOST:PORT (default 127.0.0.1:9092)")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--speed", type=float, help="replay N times faster than event time")
    speed.add_argument("--max-speed", action="store_true", help="replay as fast as possible (the default)")
    p.add_argument("--rebase-time", action="store_true", help="shift timestamps so the first event is now")
    p.add_argument(
        "--topic", choices=("clickstream", "orders", "tickets"), help="jsonl: stream of lines without a `topic` field"
    )
    p.add_argument("--partitions", type=int, help="partitions for topics it creates (default 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("generate", help="generate realistic synthetic traffic")
    from ..tools.generate import add_arguments

    add_arguments(p)
    _add_config(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("worker", help="run the KPI worker (several workers share the partitions)")
    p.add_argument("--broker", help="Kafka bootstrap HOST:PORT (default 127.0.0.1:9092)")
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
    _add_config(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("tail", help="follow the kpi-results topic (pretty, or JSON lines with --json)")
    from ..tools.tail import add_arguments as add_tail_arguments

    add_tail_arguments(p)
    p.add_argument("--broker", help="Kafka bootstrap HOST:PORT (default 127.0.0.1:9092)")
    _add_config(p)
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("config", help="configuration files")
    config_sub = p.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a TOML config file and print the effective settings")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=cmd_config_check)

    from ..tools import demo

    demo.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except SettingsError as exc:
        lines = exc.problems if len(exc.problems) > 1 else []
        console.print(
            "[bold red]error:[/] " + (f"{len(lines)} problems in the settings:" if lines else escape(str(exc))),
            highlight=False,
        )
        for line in lines:
            console.print(f"  - {escape(line)}", highlight=False)
        return 2
    except (UserError, *EXPECTED_ERRORS) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130
