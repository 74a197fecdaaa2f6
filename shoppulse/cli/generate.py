"""`shoppulse generate`: synthetic traffic, live into Kafka or as a timeline into a JSONL file."""

from __future__ import annotations

import argparse
from collections import Counter

from ..tools.generate import SCENARIOS, GeneratorConfig, generate_traffic
from .common import add_config_option, console, settings_from_args

OUT_DURATION_S = 600.0  # a timeline into a file needs an end


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="generate realistic synthetic traffic")
    p.add_argument("--rate", type=float, default=50.0, metavar="EV_PER_S", help="target events per second, all topics")
    p.add_argument("--duration", type=float, metavar="S", help="seconds to run (default: until Ctrl-C; 600 with --out)")
    p.add_argument("--seed", type=int, default=1, metavar="N")
    p.add_argument("--scenario", choices=SCENARIOS, default="normal")
    target = p.add_mutually_exclusive_group()  # its --broker is one of two targets, exclusive with --out
    target.add_argument(
        "--broker", metavar="URL", help="Kafka bootstrap server (default from settings); events are sent in real time"
    )
    target.add_argument(
        "--out", metavar="FILE.jsonl", help="write a synthetic timeline to a JSONL file, as fast as possible"
    )
    add_config_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    duration_s = OUT_DURATION_S if args.out and args.duration is None else args.duration
    counts = generate_traffic(
        settings_from_args(args),
        GeneratorConfig(rate=args.rate, seed=args.seed, scenario=args.scenario),
        duration_s=duration_s,
        out=args.out,
    )
    by_stream: Counter[str] = Counter()
    for (stream, _), n in counts.items():
        by_stream[stream] += n
    summary = ", ".join(f"{stream} {n:,}" for stream, n in sorted(by_stream.items()))
    console.print(f"sent {sum(counts.values()):,} events ({summary})" + (f" to {args.out}" if args.out else ""))
    return 0
