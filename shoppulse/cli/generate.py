"""`shoppulse generate`: synthetic traffic, live into Kafka or as a timeline into a JSONL file."""

from __future__ import annotations

import argparse

from ..tools import generate
from .common import add_config_option, settings_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="generate realistic synthetic traffic")
    generate.add_arguments(p)  # its --broker is one of two targets, exclusive with --out
    add_config_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return generate.command(args, settings_from_args(args))
