"""Restarts of a worker with a large state: how many changelog records each restart reads, and
how long until it processes again.

    .venv/bin/python bench/restart.py [--events 2000000] [--returning-rate 0.1] [--repeat 1] [--keep DIR]

1. Generates N events of a seeded timeline (`bench/_harness.py generate`; `--returning-rate`
   sets the share of sessions by a visitor seen before, so that N events bring enough distinct
   visitors: at least `--min-visitors`), produces them into fresh 4-partition topics of a
   LocalKafka of its own, and runs one worker until the group's committed offsets reach the
   log end. Held back: `--new` more events of the same timeline per restart.
2. Then, `--repeat` times, three restarts of that worker, each with a fresh batch of the held-back
   events produced just before it starts, so there is work waiting:
   (a) `kill -9`: SIGKILL, then a new process on the same data dir;
   (b) clean: SIGTERM (an orderly stop that checkpoints every partition), then a new process;
   (c) full (the baseline): SIGTERM, the local copy of the changelogs deleted
       (`<data_dir>/local-state`), then a new process: every partition restored from the
       changelog's start, as before the local copy existed.
   Measured for each: the changelog records the restore read and the restores by kind
   (`shoppulse_restored_changelog_records_total{kind}`, `shoppulse_restores_total{kind}` on
   /metrics), and the time from process start to the first new event counted
   (`shoppulse_events_total` > 0: its first checkpoint has committed) and to all of them.
3. Prints a table; the ratio of (a) and (b) to (c) is the figure to compare across machines.

Benchmarks print figures; they do not pass or fail. Exactness across both kinds of restart is
the tests' job (tests/test_dataplane.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import _harness as h  # also puts the repository on sys.path
from throughput import end_offsets, machine, machine_line, namespace, worker_command

from shoppulse.kafka.broker import LocalKafka, free_port
from shoppulse.tools.sink import KafkaSink

SAMPLE = re.compile(r"^(shoppulse_\w+)\{([^}]*)\} ([0-9.e+]+)$", re.M)


def scrape(port: int) -> dict[tuple[str, str], float] | None:
    """(metric, labels) -> value of the shoppulse_ samples, or None while /metrics is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    return {(name, labels): float(value) for name, labels, value in SAMPLE.findall(text)}


def total(samples: dict[tuple[str, str], float], name: str, label: str = "") -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and label in labels)


async def produce(settings, events) -> None:
    async with KafkaSink(settings) as sink:
        for stream, event in events:
            await sink.send(stream, event)


class Worker:
    """One `shoppulse worker` process on a data dir, with its log and metrics port."""

    def __init__(self, env: dict[str, str], data_dir: Path, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.started = time.perf_counter()
        command = worker_command(None, data_dir, self.port)
        self.proc = subprocess.Popen(command, env=env, cwd=h.ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_for_events(self, at_least: float, timeout: float) -> float:
        """Seconds from process start until `shoppulse_events_total` reached `at_least`."""
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            samples = scrape(self.port)
            if samples is not None and total(samples, "shoppulse_events_total") >= at_least:
                return time.perf_counter() - self.started
            if time.perf_counter() - self.started > timeout:
                raise RuntimeError(f"fewer than {at_least} events in {timeout:.0f} s; log {self.log_path}")
            time.sleep(0.05)

    def stop(self, how: str) -> None:
        if how == "kill -9":
            self.proc.kill()
        else:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)
        self.log.close()


async def main(args) -> int:
    info = machine()
    print(machine_line(info))
    workdir = Path(tempfile.mkdtemp(prefix="shoppulse-restart-"))
    broker = LocalKafka(port=0, data_dir=workdir / "kafka").start()
    try:
        tag = uuid.uuid4().hex[:8]
        settings, env = namespace(broker.bootstrap, tag)
        env = dict(os.environ, **env, SHOPPULSE_APP_ID=f"bench-{tag}")
        held_back = args.new * args.repeat * 3
        t = time.perf_counter()
        _records, events, _start = h.generate(
            args.events + held_back, rate=args.rate, seed=args.seed, returning_rate=args.returning_rate
        )
        visitors = len({e.visitor_id for s, e in events[: args.events] if s == "clickstream"})
        print(
            f"generated {len(events):,} events in {time.perf_counter() - t:.0f} s: {visitors:,} distinct "
            f"visitors in the first {args.events:,}"
        )
        if visitors < args.min_visitors:
            raise SystemExit(f"only {visitors:,} visitors (< {args.min_visitors:,}): lower --returning-rate")
        t = time.perf_counter()
        await produce(settings, events[: args.events])
        print(f"produced {args.events:,} in {time.perf_counter() - t:.0f} s")
        data_dir = workdir / "worker"
        worker = Worker(env, data_dir, workdir / "worker-0.log")
        first_run = worker.wait_for_events(args.events, args.timeout)
        print(f"first run: all {args.events:,} events counted {first_run:.0f} s after the start")
        changelogs = await end_offsets(
            broker.bootstrap,
            [f"bench-{tag}-{s}-state-changelog" for s in h.STREAMS] + [f"bench-{tag}-merge-state-changelog"],
        )
        print(f"changelog records: {sum(changelogs.values()):,}")
        rows = []
        batch = iter(range(args.events, len(events), args.new))
        for r in range(args.repeat):
            for kind in ("kill -9", "clean", "full"):
                worker.stop("kill -9" if kind == "kill -9" else "sigterm")
                if kind == "full":
                    shutil.rmtree(data_dir / "local-state")
                start = next(batch)
                await produce(settings, events[start : start + args.new])
                log_path = workdir / f"worker-{r}-{kind.replace(' ', '')}.log"
                worker = Worker(env, data_dir, log_path)
                first = worker.wait_for_events(1, args.timeout)
                done = worker.wait_for_events(args.new, args.timeout)
                samples = scrape(worker.port) or {}
                rows.append(
                    {
                        "repeat": r + 1,
                        "kind": kind,
                        "records_tail": total(samples, "shoppulse_restored_changelog_records_total", 'kind="tail"'),
                        "records_full": total(samples, "shoppulse_restored_changelog_records_total", 'kind="full"'),
                        "restores_tail": total(samples, "shoppulse_restores_total", 'kind="tail"'),
                        "restores_full": total(samples, "shoppulse_restores_total", 'kind="full"'),
                        "first_s": first,
                        "all_s": done,
                        "load": h.load_average(),
                    }
                )
                print(rows[-1], flush=True)
        worker.stop("sigterm")
        report(rows, args, visitors, sum(changelogs.values()))
        if args.keep:
            shutil.copytree(workdir, args.keep, ignore=shutil.ignore_patterns("kafka"))
            print(f"kept the worker's data dir and logs in {args.keep}")
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(rows: list[dict], args, visitors: int, changelog_records: int) -> None:
    print()
    print(
        f"{args.events:,} events, {visitors:,} visitors, {changelog_records:,} changelog records; "
        f"{args.new:,} new events waiting at each restart"
    )
    print(
        f"{'restart':<9} {'records read (tail / full)':>27} {'restores (tail/full)':>21} "
        f"{'first event s':>13} {'all new s':>9}"
    )
    for row in rows:
        print(
            f"{row['kind']:<9} {row['records_tail']:>12,.0f} / {row['records_full']:>12,.0f} "
            f"{row['restores_tail']:>10.0f}/{row['restores_full']:<10.0f} "
            f"{row['first_s']:>13.1f} {row['all_s']:>9.1f}"
        )
    full = h.median([r["first_s"] for r in rows if r["kind"] == "full"])
    for kind in ("kill -9", "clean"):
        first = h.median([r["first_s"] for r in rows if r["kind"] == kind])
        print(f"{kind}: processing again after {first:.1f} s, {first / full:.2f} of the full restore's {full:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--rate", type=float, default=5000, help="events/s of event time in the timeline")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--returning-rate", type=float, default=0.1)
    parser.add_argument("--min-visitors", type=int, default=500_000)
    parser.add_argument("--new", type=int, default=2000, help="events produced before each restart")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--keep", type=Path, help="copy the worker's data dir and logs here (to profile a restore)")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
