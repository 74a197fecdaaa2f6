"""`shoppulse tail`: follow the kpi-results topic."""

from __future__ import annotations

import argparse

from ..tools.tail import ResultFilter, tail
from .common import add_broker_option, add_config_option, settings_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tail", help="follow the kpi-results topic (pretty, or JSON lines with --json)")
    p.add_argument("--kpi", metavar="KEY", help="only this KPI (a key from docs/kpis.md, e.g. conversion_rate)")
    p.add_argument("--window", metavar="SIZE", help="only this window size, e.g. 1m, 5m, 1h")
    p.add_argument("--final-only", action="store_true", help="only the one final record of each window")
    p.add_argument("--json", action="store_true", help="print the records as JSON lines, as on the topic")
    p.add_argument("--from-beginning", action="store_true", help="start with the oldest record on the topic")
    p.add_argument("--max-records", type=int, metavar="N", help="exit after printing N records")
    p.add_argument("--idle-exit", type=float, metavar="S", help="exit when no record was printed for S seconds")
    add_broker_option(p)
    add_config_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    tail(
        settings_from_args(args),
        ResultFilter(kpi=args.kpi, window=args.window, final_only=args.final_only),
        as_json=args.json,
        from_beginning=args.from_beginning,
        max_records=args.max_records,
        idle_exit_s=args.idle_exit,
    )
    return 0
