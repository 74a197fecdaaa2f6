"""`shoppulse demo`: broker, worker, traffic, Prometheus and a live KPI view on this machine."""

from __future__ import annotations

import argparse

from ..tools.demo import DemoOptions, run_demo
from ..tools.generate import SCENARIOS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run broker, worker, traffic and a live KPI view on this machine")
    p.add_argument("--broker", help="use this Kafka (HOST:PORT) instead of starting a local one")
    p.add_argument("--config", metavar="FILE", help="settings file (TOML), e.g. for goals; see shoppulse.example.toml")
    p.add_argument("--scenario", choices=SCENARIOS, default="normal", help="scenario to start with (key `s` switches)")
    p.add_argument("--rate", type=float, default=40.0, help="generated events per second (default 40)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C or `q`)")
    p.add_argument(
        "--no-tty", action="store_true", help="print one line per closed 1 m window instead of the live view"
    )
    p.add_argument(
        "--metrics-port", type=int, default=9464, help="the worker's /metrics port (default 9464; 0 = a free one)"
    )
    p.add_argument(
        "--prometheus-port",
        type=int,
        default=9090,
        help="Prometheus port, when it is on PATH (default 9090; 0 = a free one)",
    )
    p.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus even if it is on PATH")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    run_demo(
        DemoOptions(
            broker=args.broker,
            config_file=args.config,
            scenario=args.scenario,
            rate=args.rate,
            seed=args.seed,
            duration_s=args.duration,
            live_view=not args.no_tty,
            metrics_port=args.metrics_port,
            prometheus_port=args.prometheus_port,
            start_prometheus=not args.no_prometheus,
        )
    )
    return 0
