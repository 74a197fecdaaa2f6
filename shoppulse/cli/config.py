"""`shoppulse config check FILE`: validate a config file and print the effective settings."""

from __future__ import annotations

import argparse
import os

from rich.markup import escape

from ..config import ENV_PREFIX, NOT_SETTINGS, check_config
from ..settings import Settings, window_label
from ..streams.goals import goals
from .common import console


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("config", help="configuration files")
    config_sub = p.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a TOML config file and print the effective settings")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
