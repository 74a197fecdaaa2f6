"""`shoppulse demo`: broker, worker, traffic, Prometheus and a live KPI view on this machine."""

from __future__ import annotations

import argparse

from ..tools import demo


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run broker, worker, traffic and a live KPI view on this machine")
    demo.add_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return demo.command(args)
