"""Run a peer of bench/throughput.py as a subprocess and measure it as the worker is measured.

`peer_run` starts `faust_empty.py` or `quix_app.py` with a fresh consumer group and data dir,
samples the RSS (with children) and CPU seconds of the process with psutil every 0.1 s, reads
the peer's progress file (records processed), and stops it with SIGTERM once the group's
committed offsets on the source topics reach their log end: the same end point as the
worker's. Reported: time from process start and from the first processed record to that
point, to the last record processed, and the rate between 10 % and 90 % of the records.

`log_bytes` sums the sizes of the log segments (`*.log`) per topic in the broker's log dirs,
so that a snapshot before and after a run gives the bytes each variant wrote to Kafka
(changelogs, repartition and output topics, `__consumer_offsets`, `__transaction_state`;
not the KRaft metadata log `__cluster_metadata`).
It needs the broker's data dir: on a broker given with --broker the figure is not available.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from . import _progress

HERE = Path(__file__).resolve().parent
PEERS = ("faust-empty", "quix")
INTERNAL = ("__consumer_offsets", "__transaction_state")
NOT_WRITTEN_BY_CLIENTS = {"__cluster_metadata"}  # the KRaft metadata log: topic creation and the like
PARTITION_DIR = re.compile(r"^(.+)-(\d+)$")


def log_bytes(kafka_logs: Path | None) -> dict[str, int] | None:
    """Bytes in the log segments of each topic in a broker's log dir, or None without one."""
    if kafka_logs is None or not kafka_logs.is_dir():
        return None
    sizes: dict[str, int] = {}
    for directory in kafka_logs.iterdir():
        match = PARTITION_DIR.match(directory.name)
        if not match or not directory.is_dir():  # also skips "-delete" and "-future" dirs
            continue
        size = 0
        for segment in directory.glob("*.log"):
            with contextlib.suppress(FileNotFoundError):  # rolled or deleted meanwhile
                size += segment.stat().st_size
        sizes[match.group(1)] = sizes.get(match.group(1), 0) + size
    return sizes


def written(before: dict[str, int] | None, after: dict[str, int] | None, inputs: set[str]) -> dict[str, int] | None:
    """Bytes each topic other than the input topics grew by between two `log_bytes` snapshots."""
    if before is None or after is None:
        return None
    grown = {t: size - before.get(t, 0) for t, size in after.items() if t not in inputs | NOT_WRITTEN_BY_CLIENTS}
    return {t: b for t, b in sorted(grown.items()) if b > 0}


def command(peer: str, broker: str, group: str, topics: list[str], progress: Path, data_dir: Path) -> list[str]:
    if peer == "faust-empty":
        return [
            sys.executable,
            str(HERE / "faust_empty.py"),
            "--broker",
            broker,
            "--group",
            group,
            "--topics",
            ",".join(topics),
            "--progress",
            str(progress),
            "--data-dir",
            str(data_dir),
        ]
    if peer == "quix":
        clickstream = next(t for t in topics if t.startswith("clickstream"))
        others = [t for t in topics if t != clickstream]
        return [
            sys.executable,
            str(HERE / "quix_app.py"),
            "--broker",
            broker,
            "--group",
            group,
            "--clickstream",
            clickstream,
            "--other",
            ",".join(others),
            "--progress",
            str(progress),
            "--state-dir",
            str(data_dir),
        ]
    raise ValueError(f"unknown peer {peer!r}; known: {', '.join(PEERS)}")


async def committed(admin: AIOKafkaAdminClient, group: str, ends: dict[TopicPartition, int]) -> int:
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=list(ends))
    except Exception:  # the group may not exist yet
        return 0
    return sum(min(meta.offset, ends[tp]) for tp, meta in offsets.items() if tp in ends and meta.offset >= 0)


async def peer_run(
    peer: str,
    broker: str,
    ends: dict[TopicPartition, int],
    workdir: Path,
    run_tag: str,
    broker_pid: int | None,
    timeout: float,
) -> dict:
    n = sum(ends.values())
    topics = sorted({tp.topic for tp in ends})
    group = f"bench-{peer}-{run_tag}"  # not prefixed by the worker's app id (bench-{run_tag}): see worker_output
    progress_path = workdir / f"{group}.progress.json"
    log_path = workdir / f"{group}.log"
    cmd = command(peer, broker, group, topics, progress_path, workdir / group)
    broker_proc = psutil.Process(broker_pid) if broker_pid else None
    broker_cpu0 = sum(broker_proc.cpu_times()[:2]) if broker_proc else None
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    log = open(log_path, "w")
    t0, t0_wall = time.perf_counter(), time.time()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    ps = psutil.Process(proc.pid)
    peak_rss, cpu = 0, 0.0
    samples: list[tuple[float, float]] = []
    t_first = t_processed = t_done = None
    last_commit_check = 0.0
    try:
        while True:
            now = time.perf_counter() - t0
            if proc.poll() is not None:
                raise RuntimeError(f"{peer} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
                peak_rss = max(peak_rss, rss)
                cpu = sum(ps.cpu_times()[:2])
            except psutil.NoSuchProcess:
                pass
            state = _progress.read(progress_path)
            if state is not None:
                samples.append((now, state["count"]))
                if state["first"] is not None and t_first is None:
                    t_first = state["first"] - t0_wall
                if state["count"] >= n and t_processed is None:
                    t_processed = now
            if now - last_commit_check >= 0.5 and t_first is not None:
                last_commit_check = now
                if await committed(admin, group, ends) >= n:
                    t_done = time.perf_counter() - t0
                    break
            if now > timeout:
                raise RuntimeError(f"{peer} did not commit all {n} offsets within {timeout:.0f} s; log {log_path}")
            await asyncio.sleep(0.1)
    finally:
        broker_cpu = sum(broker_proc.cpu_times()[:2]) - broker_cpu0 if broker_proc and broker_cpu0 is not None else None
        stopping = time.perf_counter()
        proc.terminate()
        killed = False
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            killed = True
            proc.kill()
            proc.wait()
        shutdown_s = time.perf_counter() - stopping
        log.close()
        await admin.close()
    assert t_done is not None and t_first is not None
    log_text = log_path.read_text(errors="replace")
    warnings = [line for line in log_text.splitlines() if re.search(r"WARNING|ERROR|Traceback", line)]
    return {
        "peer": peer,
        "group": group,
        "total_s": t_done,
        "first_event_s": t_first,
        "processed_s": t_processed,
        "eps_total": n / t_done,
        "eps_from_first": n / (t_done - t_first),
        "eps_processed": n / (t_processed - t_first) if t_processed else None,
        "eps_steady": steady_rate(samples, n),
        "peak_rss_mb": peak_rss / 2**20,
        "cpu_s": cpu,
        "cpu_util": cpu / t_done,
        "broker_cpu_s": broker_cpu,
        "shutdown_s": shutdown_s,
        "killed_after_sigterm": killed,
        "log_warnings": len(warnings),
        "counters": {k: v for k, v in (_progress.read(progress_path) or {}).items() if k not in ("count", "first")},
        "log_sample": sorted({re.sub(r"[0-9]+", "N", line)[-160:] for line in warnings})[:8],
    }


def steady_rate(samples: list[tuple[float, float]], n: int) -> float | None:
    """records/s between the samples where the count first reached 10 % and 90 % of N."""
    lo = next((s for s in samples if s[1] >= 0.1 * n), None)
    hi = next((s for s in samples if s[1] >= 0.9 * n), None)
    if not lo or not hi or hi[0] <= lo[0]:
        return None
    return (hi[1] - lo[1]) / (hi[0] - lo[0])


def per_input_byte(written_bytes: dict[str, int] | None, input_bytes: int | None) -> float | None:
    if written_bytes is None or not input_bytes:
        return None
    return sum(written_bytes.values()) / input_bytes


def describe_written(written_bytes: dict[str, int] | None, input_bytes: int | None) -> str:
    """'wrote 12.3 MB to Kafka, 1.27 B per input byte: topic 10.1 MB, ...' for one run."""
    if written_bytes is None:
        return "bytes written to Kafka: n/a (needs our own LocalKafka's log dir)"
    total = sum(written_bytes.values())
    ratio = per_input_byte(written_bytes, input_bytes)
    parts = ", ".join(f"{t} {b / 2**20:.2f} MB" for t, b in sorted(written_bytes.items(), key=lambda x: -x[1]))
    return f"wrote {total / 2**20:.1f} MB to Kafka, {ratio or 0:.2f} B per input byte" + (f": {parts}" if parts else "")
