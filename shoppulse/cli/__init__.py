"""`shoppulse` command line: one module per command, each with `add_parser(subparsers)` and
`run(args) -> int`. Expected failures (`ShoppulseError`) print a message saying what to do
and exit with code 2, never a traceback; Ctrl-C exits with 130."""

from __future__ import annotations

import argparse

from rich.markup import escape

from ..errors import SettingsError, ShoppulseError
from . import config, demo, generate, kafka, replay, tail, worker
from .common import console

COMMANDS = (kafka, replay, generate, worker, tail, config, demo)  # in the order `--help` lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shoppulse", description="Real-time e-commerce KPIs from Kafka.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except ShoppulseError as exc:
        _print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _print_error(exc: ShoppulseError) -> None:
    problems = exc.problems if isinstance(exc, SettingsError) and len(exc.problems) > 1 else []
    headline = f"{len(problems)} problems in the settings:" if problems else escape(str(exc))
    console.print(f"[bold red]error:[/] {headline}", highlight=False)
    for problem in problems:
        console.print(f"  - {escape(problem)}", highlight=False)
