"""What the commands share: the stderr console, the --broker and --config options, and the
settings the parsed flags make."""

from __future__ import annotations

import argparse

from rich.console import Console

from ..config import load_settings
from ..settings import Settings

console = Console(stderr=True, soft_wrap=True)  # long messages: let the terminal wrap, keep pipes greppable

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


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Defaults, then the --config file, then SHOPPULSE_* environment variables, then flags."""
    flags = {key: getattr(args, dest) for dest, key in FLAG_SETTINGS.items() if getattr(args, dest, None) is not None}
    return load_settings(getattr(args, "config", None), flags)


def add_broker_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", help="Kafka bootstrap HOST:PORT (default 127.0.0.1:9092)")


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file (see shoppulse.example.toml); SHOPPULSE_* variables and flags override it",
    )
