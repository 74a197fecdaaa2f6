"""Throughput of the shoppulse worker against the raw aiokafka ceiling.

    .venv/bin/python bench/throughput.py [--events N] [--broker HOST:PORT] [--repeat R]

1. Generates N events (seeded `shoppulse generate` timeline) and produces them with the real
   producer (`tools.sink.KafkaSink`: same encoding, keys and partitioner) into fresh topics with
   4 partitions. Without --broker a LocalKafka is started on a free port and stopped at the end.
2. Then, R times each, interleaved so that load from other users of the machine hits all alike:
   (a) ceiling: one plain AIOKafkaConsumer (no group, defaults) reads all N records;
   (b) faust-empty: an empty faust-streaming agent on the same topics, and
   (c) quix: a Quix Streams 3.x app doing a smaller job (windowed clickstream counts per event
       type, one per-session state update): the peers of issue 12 (bench/peers/, `--peers`;
       Quix needs `pip install -e '.[bench]'`), subprocesses measured as the worker is;
   (d) worker: a real `python -m shoppulse.cli worker` subprocess (fresh app id = consumer group,
       fresh data dir) reads the same topics from the start. Timed from process start, and
       from the first processed event (first non-zero `shoppulse_events_total` on /metrics), until
       the group's committed offsets on the source topics reach the log end. Also reported: the
       rate between 10 % and 90 % of `shoppulse_events_total` (steady state), peak RSS and CPU
       seconds of the worker (psutil), and the broker's CPU seconds when we started it;
   (e) in-process: the partition engines and the merger (bench/_harness.py), no Faust, no Kafka.
3. Prints a table with median (min–max) and the ratio worker/ceiling; the project's target is
   a worker at half the ceiling. For every variant also the bytes it wrote to Kafka per input
   byte: how much the log segments of all topics but the inputs grew on the broker's disk
   during its run, over the input topics' segment bytes (only on our own LocalKafka).
   `--json FILE` also writes every run's raw figures.

Benchmarks print figures; they do not pass or fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import _harness as h  # also puts the repository on sys.path
import psutil
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from peers.measure import PEERS, describe_written, log_bytes, peer_run, per_input_byte
from peers.measure import written as written_since

from shoppulse.kafka.broker import KAFKA_VERSION, LocalKafka, free_port
from shoppulse.settings import Settings
from shoppulse.tools.sink import KafkaSink

EVENTS_TOTAL = re.compile(r"^shoppulse_events_total\{([^}]*)\} ([0-9.e+]+)$", re.M)


def namespace(broker: str, tag: str) -> tuple[Settings, dict[str, str]]:
    """Unique topics (as tests/conftest.py Namespace does) for the settings and the worker's env."""
    settings = Settings(broker=broker, app_id=f"bench-{tag}", partitions=4)
    topics = {name: f"{name}-bench-{tag}" for name in ("clickstream", "orders", "tickets")}
    topics["results"] = f"kpi-results-bench-{tag}"
    topics["dead_letters"] = f"kpi-dead-letters-bench-{tag}"
    for name, value in topics.items():
        setattr(settings.topics, name, value)
    env = {f"SHOPPULSE_TOPICS__{k.upper()}": v for k, v in topics.items()}
    env.update({"SHOPPULSE_BROKER": broker, "SHOPPULSE_PARTITIONS": "4"})
    return settings, env


async def produce(settings: Settings, events) -> float:
    started = time.perf_counter()
    async with KafkaSink(settings) as sink:
        for stream, event in events:
            await sink.send(stream, event)
    return time.perf_counter() - started


async def end_offsets(broker: str, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker)
    await consumer.start()
    try:
        tps = [
            TopicPartition(t, p) for t in topics for p in sorted(consumer._client.cluster.partitions_for_topic(t) or ())
        ]
        if not tps:
            await consumer._client.force_metadata_update()
            tps = [
                TopicPartition(t, p) for t in topics for p in sorted(consumer._client.cluster.partitions_for_topic(t))
            ]
        return await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


async def ceiling(broker: str, topics: list[str], n: int) -> dict:
    """Plain aiokafka consumer, default settings, no group: read N records and drop them."""
    me = psutil.Process()
    cpu0 = sum(me.cpu_times()[:2])
    t0 = time.perf_counter()
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=broker, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    count, nbytes, first = 0, 0, None
    try:
        while count < n:
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                if first is None and messages:
                    first = time.perf_counter()
                count += len(messages)
                for message in messages:
                    nbytes += len(message.value)
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"ceiling consumer read only {count} of {n} in 600 s")
    finally:
        end = time.perf_counter()
        await consumer.stop()
    return {
        "records": count,
        "bytes": nbytes,
        "total_s": end - t0,
        "from_first_s": end - first,
        "eps": n / (end - first),
        "eps_total": n / (end - t0),
        "cpu_s": sum(me.cpu_times()[:2]) - cpu0,
    }


def scrape_events(port: int, topics: set[str]) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    total = 0.0
    for labels, value in EVENTS_TOTAL.findall(text):
        topic = re.search(r'topic="([^"]*)"', labels)
        if topic and topic.group(1) in topics:
            total += float(value)
    return total


async def committed(admin: AIOKafkaAdminClient, group: str, ends: dict[TopicPartition, int]) -> int:
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=list(ends))
    except Exception:  # the group may not exist yet
        return 0
    return sum(min(meta.offset, ends[tp]) for tp, meta in offsets.items() if tp in ends and meta.offset >= 0)


def worker_command(variant: str | None, data_dir: Path, port: int, profile: Path | None = None) -> list[str]:
    """`shoppulse worker` (or a bench/worker_variant.py variant of it) on a loopback metrics port."""
    entry = (
        ["-m", "shoppulse.cli"]
        if variant is None
        else [str(Path(__file__).resolve().parent / "worker_variant.py"), variant]
    )
    command = [sys.executable, *entry, "worker", "--data-dir", str(data_dir)]
    command += ["--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
    if profile:
        command[1:1] = ["-m", "cProfile", "-o", str(profile)]
    return command


async def worker_run(
    broker: str,
    env_extra: dict[str, str],
    ends: dict[TopicPartition, int],
    workdir: Path,
    run_tag: str,
    broker_pid: int | None,
    timeout: float,
    profile: Path | None,
    keep_logs: str | None = None,
    kafka_logs: Path | None = None,
    variant: str | None = None,
) -> dict:
    n = sum(ends.values())
    topics = {tp.topic for tp in ends}
    app_id = f"bench-{run_tag}"
    port = free_port()
    env = dict(os.environ, **env_extra, SHOPPULSE_APP_ID=app_id)
    data_dir = workdir / app_id
    log_path = workdir / f"{app_id}.log"
    command = worker_command(variant, data_dir, port, profile)
    broker_proc = psutil.Process(broker_pid) if broker_pid else None
    broker_cpu0 = sum(broker_proc.cpu_times()[:2]) if broker_proc else None
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    log = open(log_path, "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=h.ROOT, stdout=log, stderr=subprocess.STDOUT)
    ps = psutil.Process(proc.pid)
    peak_rss, cpu, rss = 0, 0.0, 0
    rss_at: dict[int, int] = {}  # RSS when events_total first reached 0, 10, ..., 100 % of N
    last_half_rss: list[int] = []  # every RSS sample once events_total reached N / 2: is it flat?
    samples: list[tuple[float, float]] = []  # (seconds since start, events_total)
    t_first = t_processed = t_done = None
    last_commit_check = 0.0
    try:
        while True:
            now = time.perf_counter() - t0
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
                peak_rss = max(peak_rss, rss)
                cpu = sum(ps.cpu_times()[:2])
            except psutil.NoSuchProcess:
                pass
            total = scrape_events(port, topics)
            if total is not None:
                samples.append((now, total))
                rss_at.setdefault(min(10, int(10 * total / n)) * 10, rss)
                if 2 * total >= n:
                    last_half_rss.append(rss)
                if total > 0 and t_first is None:
                    t_first = now
                if total >= n and t_processed is None:
                    t_processed = now
            if now - last_commit_check >= 0.5 and t_first is not None:
                last_commit_check = now
                if await committed(admin, app_id, ends) >= n:
                    t_done = time.perf_counter() - t0
                    break
            if now > timeout:
                raise RuntimeError(f"worker did not commit all {n} offsets within {timeout:.0f} s; log {log_path}")
            await asyncio.sleep(0.1)
    finally:
        broker_cpu = sum(broker_proc.cpu_times()[:2]) - broker_cpu0 if broker_proc else None
        stopping = time.perf_counter()
        proc.terminate()
        killed = False
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            killed = True  # SIGTERM did not stop it within 60 s
            proc.kill()
            proc.wait()
        shutdown_s = time.perf_counter() - stopping
        log.close()
        await admin.close()
        if keep_logs:
            Path(keep_logs).mkdir(parents=True, exist_ok=True)
            shutil.copy(log_path, Path(keep_logs) / log_path.name)
    steady = steady_rate(samples, n)
    written = await worker_output(broker, app_id, kafka_logs)
    log_text = log_path.read_text(errors="replace")
    warnings = [line for line in log_text.splitlines() if re.search(r"WARNING|ERROR", line)]
    # Longest time events_total stood still between the first event and N (it moves once per batch).
    stalled, since = 0.0, None
    for a, b in itertools.pairwise(samples):
        if t_first is not None and a[0] >= t_first and a[1] < n and b[1] == a[1]:
            since = a[0] if since is None else since
            stalled = max(stalled, b[0] - since)
        else:
            since = None
    return {
        "app_id": app_id,
        "total_s": t_done,
        "first_event_s": t_first,
        "processed_s": t_processed,
        "eps_total": n / t_done,
        "eps_from_first": n / (t_done - t_first),
        "eps_steady": steady,
        "peak_rss_mb": peak_rss / 2**20,
        "rss_mb_at_pct": {k: v / 2**20 for k, v in sorted(rss_at.items())},
        "last_half_rss_mb": (min(last_half_rss) / 2**20, max(last_half_rss) / 2**20) if last_half_rss else None,
        "cpu_s": cpu,
        "cpu_util": cpu / t_done,
        "broker_cpu_s": broker_cpu,
        "stalled_s": stalled,
        "written": written,
        "shutdown_s": shutdown_s,
        "killed_after_sigterm": killed,
        "buffer_full_warnings": sum("producer buffer full" in line for line in warnings),
        "log_warnings": len(warnings),
        "log_sample": sorted({re.sub(r"[0-9]+", "N", line)[-160:] for line in warnings})[:8],
    }


async def worker_output(broker: str, app_id: str, kafka_logs: Path | None) -> dict[str, list]:
    """Records (and, on our own broker, bytes on disk) the worker wrote to its own topics:
    table changelogs and the partials topic, all prefixed with the app id."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        topics = sorted(t for t in cluster.topics() if t.startswith(app_id))
        tps = [TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
    out = {}
    for topic in topics:
        records = sum(v for tp, v in ends.items() if tp.topic == topic)
        size = None
        if kafka_logs:
            size = sum(f.stat().st_size for d in kafka_logs.glob(f"{topic}-*") for f in d.glob("*.log"))
        out[topic[len(app_id) + 1 :]] = [records, size]
    return out


def steady_rate(samples: list[tuple[float, float]], n: int) -> float | None:
    """events/s between the samples where events_total first reached 10 % and 90 % of N."""
    lo = next((s for s in samples if s[1] >= 0.1 * n), None)
    hi = next((s for s in samples if s[1] >= 0.9 * n), None)
    if not lo or not hi or hi[0] <= lo[0]:
        return None
    return (hi[1] - lo[1]) / (hi[0] - lo[0])


def inprocess_run(records) -> dict:
    pipeline = h.InProcessPipeline()
    started = time.perf_counter()
    pipeline.run(records)
    seconds = time.perf_counter() - started
    return {
        "s": seconds,
        "eps": len(records) / seconds,
        "stages": pipeline.seconds,
        "counts": dict(pipeline.counts),
        "max_record_bytes": pipeline.max_bytes,
    }


def machine() -> dict:
    model = "?"
    with contextlib.suppress(OSError, StopIteration):
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
        "java": java[0] if java else "?",
        "mem_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "code": h.code_version(),
    }


def machine_line(info: dict) -> str:
    return (
        f"machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, Kafka {info['kafka']}, "
        f"{info['java']}, {info['mem_gb']} GB; code {info['code']}"
    )


async def main(args) -> int:
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retries right after topic creation are expected
    info = machine()
    print(machine_line(info))
    workdir = Path(tempfile.mkdtemp(prefix="shoppulse-bench-"))
    broker = None
    try:
        if args.broker:
            address, broker_pid = args.broker, None
        else:
            t = time.perf_counter()
            broker = LocalKafka(port=0, data_dir=workdir / "kafka").start()
            address, broker_pid = broker.bootstrap, broker.process.pid
            print(f"LocalKafka {address} started in {time.perf_counter() - t:.1f} s")
        tag = uuid.uuid4().hex[:8]
        settings, env = namespace(address, tag)
        for item in args.worker_env:
            key, _, value = item.partition("=")
            env[key] = value
        t = time.perf_counter()
        records, events, _start_ms = h.generate(args.events, rate=args.rate, seed=args.seed)
        by_stream = {s: sum(1 for r in records if r[0] == s) for s in h.STREAMS}
        mean_bytes = sum(len(r[3]) for r in records) / len(records)
        print(
            f"generated {len(records):,} events in {time.perf_counter() - t:.1f} s (seed {args.seed}, "
            f"{args.rate:g} ev/s of event time, {(records and mean_bytes):.0f} B mean value): {by_stream}"
        )
        produce_s = await produce(settings, events)
        del events
        source_topics = [settings.topics.source(s) for s in h.STREAMS]
        ends = await end_offsets(address, source_topics)
        n = sum(ends.values())
        print(f"produced {n:,} records in {produce_s:.1f} s ({n / produce_s:,.0f}/s) to {', '.join(source_topics)}")
        if n != args.events:
            raise RuntimeError(f"log end offsets sum to {n}, expected {args.events}")
        kafka_logs = workdir / "kafka" / "logs" if broker else None
        inputs = set(source_topics)
        sizes = log_bytes(kafka_logs)
        input_bytes = sum(sizes.get(t, 0) for t in inputs) if sizes is not None else None
        if input_bytes is not None:
            print(
                f"input: {input_bytes / 2**20:.1f} MB of log segments ({sum(len(r[3]) for r in records) / 2**20:.1f} MB of values)"
            )
        peers = [p for p in args.peers.split(",") if p and p != "none"]
        if unknown := set(peers) - set(PEERS):
            raise SystemExit(f"unknown peers {sorted(unknown)}; known: {', '.join(PEERS)}")

        runs: dict[str, list[dict]] = {"ceiling": [], "peers": [], "worker": [], "inprocess": []}
        variants = [None if v == "stock" else v for v in (args.worker_variant or "stock").split(",")]
        for i in range(args.repeat):
            load = h.load_average()
            before = log_bytes(kafka_logs)
            c = await ceiling(address, source_topics, n)
            c["written_bytes"] = written_since(before, log_bytes(kafka_logs), inputs)
            c["load"] = load
            runs["ceiling"].append(c)
            print(
                f"[{i + 1}/{args.repeat}] load {load} | ceiling {c['eps']:,.0f} ev/s "
                f"(read in {c['from_first_s']:.2f} s, {c['total_s']:.2f} s with start), cpu {c['cpu_s']:.1f} s"
            )
            for peer in peers:
                load = h.load_average()
                before = log_bytes(kafka_logs)
                pr = await peer_run(peer, address, ends, workdir, f"{tag}-r{i}", broker_pid, args.timeout)
                pr["written_bytes"] = written_since(before, log_bytes(kafka_logs), inputs)
                pr["load"] = load
                runs["peers"].append(pr)
                broker_cpu = f", broker cpu {pr['broker_cpu_s']:.1f} s" if pr["broker_cpu_s"] is not None else ""
                print(
                    f"[{i + 1}/{args.repeat}] load {load} | {peer} {pr['eps_from_first']:,.0f} ev/s from first event, "
                    f"{pr['eps_total']:,.0f} from start, {pr['eps_processed'] or 0:,.0f} to the last one processed, "
                    f"{pr['eps_steady'] or 0:,.0f} steady; first event {pr['first_event_s']:.1f} s, all processed "
                    f"{pr['processed_s'] or 0:.1f} s, committed {pr['total_s']:.1f} s; peak RSS {pr['peak_rss_mb']:.0f} MB, "
                    f"cpu {pr['cpu_s']:.1f} s ({pr['cpu_util']:.0%} of one core){broker_cpu}; {pr['log_warnings']} log warnings"
                    + "".join(f"; {k} {v:,}" for k, v in pr["counters"].items())
                )
                print(f"           {describe_written(pr['written_bytes'], input_bytes)}")
                for line in pr["log_sample"]:
                    print(f"           log: {line}")
            for variant in [] if args.skip_worker else variants:
                load = h.load_average()
                before = log_bytes(kafka_logs)
                profile = workdir / f"worker-{i}.prof" if args.profile_worker else None
                run_tag = f"{tag}-r{i}" + (f"-{variant}" if variant else "")
                w = await worker_run(
                    address,
                    env,
                    ends,
                    workdir,
                    run_tag,
                    broker_pid,
                    args.timeout,
                    profile,
                    args.keep_logs,
                    workdir / "kafka" / "logs" if broker else None,
                    variant,
                )
                w["written_bytes"] = written_since(before, log_bytes(kafka_logs), inputs)
                w["load"] = load
                w["variant"] = variant or "stock"
                runs["worker"].append(w)
                broker_cpu = f", broker cpu {w['broker_cpu_s']:.1f} s" if w["broker_cpu_s"] is not None else ""
                print(
                    f"[{i + 1}/{args.repeat}] load {load} | worker ({w['variant']}) {w['eps_from_first']:,.0f} ev/s from first "
                    f"event, {w['eps_total']:,.0f} from start, {w['eps_steady'] or 0:,.0f} steady; first event "
                    f"{w['first_event_s']:.1f} s, all counted {w['processed_s'] or 0:.1f} s, committed "
                    f"{w['total_s']:.1f} s; peak RSS {w['peak_rss_mb']:.0f} MB, cpu {w['cpu_s']:.1f} s "
                    f"({w['cpu_util']:.0%} of one core){broker_cpu}; longest pause in events_total {w['stalled_s']:.1f} s; "
                    f"{w['log_warnings']} log warnings ({w['buffer_full_warnings']} 'producer buffer full')"
                )
                written = ", ".join(
                    f"{t} {r:,}" + (f" ({b / 2**20:.0f} MB)" if b is not None else "")
                    for t, (r, b) in w["written"].items()
                )
                per_event = sum(r for r, _ in w["written"].values()) / n
                print(
                    f"           SIGTERM to exit: {w['shutdown_s']:.1f} s"
                    + (" (did not exit: killed)" if w["killed_after_sigterm"] else "")
                )
                print(
                    "           worker RSS (MB) when events reached "
                    + ", ".join(f"{pct} %: {v:.0f}" for pct, v in w["rss_mb_at_pct"].items())
                )
                if w["last_half_rss_mb"]:
                    low, high = w["last_half_rss_mb"]
                    print(
                        f"           worker RSS over the last half of the events: {low:.0f} to {high:.0f} MB "
                        f"(highest {100 * (high / low - 1):.1f} % above lowest)"
                    )
                print(f"           worker wrote {per_event:.2f} records per source event: {written}")
                print(f"           {describe_written(w['written_bytes'], input_bytes)}")
                for line in w["log_sample"]:
                    print(f"           log: {line}")
                if profile and profile.exists():
                    kept = Path(args.profile_worker).with_suffix(f".{i}.prof")
                    shutil.copy(profile, kept)
                    print(f"           worker profile: {kept}; own time by package (cProfile, wall clock):")
                    import pstats

                    rows = h.tottime_by_package(pstats.Stats(str(kept)))
                    total = sum(r[1] for r in rows)
                    for name, seconds, _calls in rows[:15]:
                        print(f"           {name:48} {seconds:7.2f} s {100 * seconds / total:5.1f} %")
            load = h.load_average()
            p = inprocess_run(records)
            p["load"] = load
            runs["inprocess"].append(p)
            stages = ", ".join(f"{k} {v:.2f}" for k, v in p["stages"].items())
            print(f"[{i + 1}/{args.repeat}] load {load} | in-process {p['eps']:,.0f} ev/s ({p['s']:.2f} s: {stages})")
            big = p["max_record_bytes"]
            print(
                f"           largest record: engine state {big['engine_state']:,} B, partial {big['partial']:,} B, "
                f"merge state {big['merge_state']:,} B"
                + (
                    "  ** over the 1 MiB default max_request_size: the worker's producer will fail **"
                    if max(big.values()) > 1_048_576
                    else ""
                )
            )

        report(runs, n, info, input_bytes)
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "machine": info,
                        "events": n,
                        "rate": args.rate,
                        "seed": args.seed,
                        "produce_s": produce_s,
                        "input_log_bytes": input_bytes,
                        "runs": runs,
                    },
                    indent=1,
                )
            )
            print(f"raw figures: {args.json}")
    finally:
        if broker:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(runs: dict, n: int, info: dict, input_bytes: int | None = None) -> None:
    ceiling = [r["eps"] for r in runs["ceiling"]]
    rows = [
        ("(a) raw aiokafka ceiling, from first record", ceiling, None),
        ("    ceiling incl. consumer start", [r["eps_total"] for r in runs["ceiling"]], None),
    ]
    for letter, peer in zip("bc", PEERS):
        p = [r for r in runs.get("peers", []) if r["peer"] == peer]
        if p:
            rows += [
                (f"({letter}) {peer}, first event -> committed end", [r["eps_from_first"] for r in p], "ratio"),
                (
                    f"    {peer}, first event -> last one processed",
                    [r["eps_processed"] for r in p if r["eps_processed"]],
                    "ratio",
                ),
                (
                    f"    {peer}, steady 10-90 % of records processed",
                    [r["eps_steady"] for r in p if r["eps_steady"]],
                    "ratio",
                ),
            ]
    for variant in dict.fromkeys(r["variant"] for r in runs["worker"]):
        w = [r for r in runs["worker"] if r["variant"] == variant]
        tag = "" if variant == "stock" else f" [{variant}]"
        rows += [
            (f"(d) worker{tag}, first event -> committed end", [r["eps_from_first"] for r in w], "ratio"),
            ("    worker, process start -> committed end", [r["eps_total"] for r in w], "ratio"),
            ("    worker, steady 10-90 % of events_total", [r["eps_steady"] for r in w if r["eps_steady"]], "ratio"),
        ]
    rows.append(("(e) in-process engines + merger", [r["eps"] for r in runs["inprocess"]], "ratio"))
    cm = h.median(ceiling)
    print(f"\n{n:,} events, {len(ceiling)} runs; median (min–max); ratio = median / median ceiling; target 0.50")
    print(f"{'measurement':60} {'events/s':>26} {'ratio':>7}")
    for name, values, ratio in rows:
        r = f"{h.median(values) / cm:.3f}" if ratio and values else ""
        print(f"{name:60} {h.median_range(values):>26} {r:>7}")
    for variant in dict.fromkeys(r["variant"] for r in runs["worker"]):
        w = [r for r in runs["worker"] if r["variant"] == variant]
        print(f"[{variant}] worker time to first event: {h.median_range([r['first_event_s'] for r in w], 1)} s")
        print(
            f"worker peak RSS: {h.median_range([r['peak_rss_mb'] for r in w])} MB; "
            f"CPU: {h.median_range([100 * r['cpu_util'] for r in w])} % of one core"
        )
        if w[0]["broker_cpu_s"] is not None:
            print(f"broker CPU during worker runs: {h.median_range([r['broker_cpu_s'] for r in w])} s")
    summary(runs, input_bytes)
    print(f"load averages at the runs: {sorted({r['load'] for v in runs.values() for r in v})}")


def summary(runs: dict, input_bytes: int | None) -> None:
    """Every variant side by side (medians): the figures issue 12 asks for, and its targets for (d)."""
    groups: list[tuple[str, list[dict], str]] = [("(a) ceiling", runs["ceiling"], "eps")]
    for letter, peer in zip("bc", PEERS):
        groups.append((f"({letter}) {peer}", [r for r in runs.get("peers", []) if r["peer"] == peer], "eps_from_first"))
    for variant in dict.fromkeys(r["variant"] for r in runs["worker"]):
        groups.append(
            (f"(d) worker [{variant}]", [r for r in runs["worker"] if r["variant"] == variant], "eps_from_first")
        )
    print(
        f"\n{'variant (medians)':28} {'events/s':>10} {'peak RSS MB':>12} {'CPU s':>8} {'Kafka B written / input B':>26}"
    )
    eps = {}
    for name, rs, key in groups:
        if not rs:
            continue
        eps[name] = h.median([r[key] for r in rs])
        rss = f"{h.median([r['peak_rss_mb'] for r in rs]):,.0f}" if "peak_rss_mb" in rs[0] else "-"
        ratios = [x for r in rs if (x := per_input_byte(r.get("written_bytes"), input_bytes)) is not None]
        per_byte = f"{h.median(ratios):.2f}" if ratios else "n/a"
        print(f"{name:28} {eps[name]:>10,.0f} {rss:>12} {h.median([r['cpu_s'] for r in rs]):>8.1f} {per_byte:>26}")
    worker = eps.get("(d) worker [stock]")
    if worker:
        targets = [("(a) ceiling", 0.10, " of (a)"), ("(b) faust-empty", 3, "x (b)"), ("(c) quix", 5, "x (c)")]
        parts = [f"{worker / eps[k]:.3g}{unit} (target >= {t:g})" for k, t, unit in targets if eps.get(k)]
        print("(d) worker [stock]: " + "; ".join(parts) + " (issue 12)")
    print("events/s: (a) from the first record read; the others from the first event to the committed end")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000, metavar="N")
    parser.add_argument("--broker", metavar="HOST:PORT", help="use this broker instead of starting a LocalKafka")
    parser.add_argument("--repeat", type=int, default=3, metavar="R")
    parser.add_argument("--rate", type=float, default=1000.0, help="event-time rate of the generated timeline")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1200.0, help="per worker run, seconds")
    parser.add_argument("--skip-worker", action="store_true", help="only the ceiling and in-process figures")
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        metavar="NAME[,NAME]",
        help=f"peers (bench/peers/) to run each repeat, 'none' for none; default {','.join(PEERS)}",
    )
    parser.add_argument(
        "--profile-worker", metavar="PREFIX.prof", help="run the worker under cProfile, keep PREFIX.<i>.prof"
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="SHOPPULSE_X=V",
        help="extra environment for the worker (a setting to try), repeatable",
    )
    parser.add_argument(
        "--worker-variant",
        metavar="NAME[,NAME]",
        help="worker variants (bench/worker_variant.py) to run in turn each repeat, e.g. stock,faust-spinner",
    )
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the worker logs here")
    parser.add_argument("--json", metavar="FILE", help="write the raw figures of every run")
    sys.exit(asyncio.run(main(parser.parse_args())))
