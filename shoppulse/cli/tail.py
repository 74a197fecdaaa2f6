"""`shoppulse tail`: follow the kpi-results topic."""

from __future__ import annotations

import argparse

from ..tools import tail
from .common import add_broker_option, add_config_option, settings_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tail", help="follow the kpi-results topic (pretty, or JSON lines with --json)")
    tail.add_arguments(p)
    add_broker_option(p)
    add_config_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return tail.command(args, settings_from_args(args))
