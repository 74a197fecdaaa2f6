"""The batch data plane (`data_plane = "batch"`, agents/dataplane.py) against the batch
recomputation (tests/oracle.py), through the real broker and real worker processes.

- the oracle comparisons of test_kpis_kafka.py (three real samples, generated traffic);
- bad input interleaved with a valid stream: every invalid record dead-lettered with its
  reason, topic, partition and offset, the valid stream's KPIs exact;
- kill -9 of the only worker at random moments of a live replay, restarted each time: exact,
  no final missing, and no final twice for a read_committed reader of kpi-results;
- a second worker joining mid-backlog, and one of two leaving mid-backlog (SIGTERM, kill -9).
"""

from __future__ import annotations

import asyncio
import collections
import random
import subprocess
import sys
import time

import msgspec
import oracle
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from conftest import DATASETS
from test_bad_input import collect_invalid
from test_kpis_kafka import QUICK_CLOSE, SAMPLES, _assert_matches, _events_total, _scrape, _update_contract_problems

from shoppulse.kafka.broker import free_port
from shoppulse.tools.generate import GeneratorConfig, generate_events
from shoppulse.tools.replay import read_events

pytestmark = pytest.mark.integration

# The broker's smallest group session (group.min.session.timeout.ms): a static member that is
# gone, even after a clean stop, holds its partitions this long.
# Short windows, grace and sessions (test_kpis_kafka.py QUICK_CLOSE): the last windows close soon.
BATCH = {"data_plane": "batch", "group_session_timeout_seconds": 6, **QUICK_CLOSE}


def _generated(seed: int, duration_s: int, rate: float = 8, **config) -> list[tuple[str, dict]]:
    pairs = generate_events(GeneratorConfig(rate=rate, seed=seed, **config), start_ms=1_700_000_000_000,
                            duration_s=duration_s)  # fmt: skip
    return [(stream, msgspec.to_builtins(event)) for stream, event in pairs]


def _write_jsonl(path, events) -> None:
    path.write_bytes(b"".join(orjson.dumps({**e, "topic": s}) + b"\n" for s, e in events))


def _replay(ns, path, *args: str) -> None:
    result = ns.shoppulse("replay", "jsonl", str(path), "--quiet", *args)
    assert result.returncode == 0, result.stderr


def _start_worker(ns, name: str, data_dir: str) -> subprocess.Popen:
    """A worker as `ns.start_worker` starts one, with the data dir of another name (a restart)."""
    port = free_port()
    log = open(ns.tmp_path / f"{name}.log", "w")
    command = [sys.executable, "-m", "shoppulse.cli", "worker", "--data-dir", str(ns.tmp_path / data_dir),
               "--metrics-port", str(port), "--metrics-host", "127.0.0.1"]  # fmt: skip
    proc = subprocess.Popen(command, env=ns.env, stdout=log, stderr=subprocess.STDOUT)
    proc.metrics_port = port  # type: ignore[attr-defined]
    ns.workers.append(proc)
    return proc


def _wait_for_events(ns, worker, at_least: float, timeout: float = 120, name: str = "w0") -> None:
    deadline = time.monotonic() + timeout
    while _events_total(worker) < at_least:
        assert time.monotonic() < deadline and worker.poll() is None, ns.worker_log(name)
        time.sleep(0.1)


def _no_tracebacks(ns, *names: str) -> None:
    for name in names:
        log = ns.worker_log(name)
        assert "Traceback" not in log, log


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_real_sample_through_the_batch_plane(namespace, fmt):
    ns = namespace(idle_timeout_seconds=5, **BATCH)
    path = DATASETS / SAMPLES[fmt]
    result = ns.shoppulse("replay", fmt, str(path), "--quiet")
    assert result.returncode == 0, result.stderr
    worker = ns.start_worker()
    events = [(stream, msgspec.to_builtins(event)) for stream, event in read_events(fmt, path)]
    _assert_matches(ns, events, [worker])
    _no_tracebacks(ns, "w0")


def test_generated_traffic_through_the_batch_plane(namespace, tmp_path):
    events = _generated(23, 5400, late_fraction=0.01, duplicate_fraction=0.02)
    path = tmp_path / "generated.jsonl"
    _write_jsonl(path, events)
    ns = namespace(idle_timeout_seconds=5, **BATCH)
    _replay(ns, path)
    worker = ns.start_worker()
    _assert_matches(ns, events, [worker])
    assert oracle.drop_late(events)[1] and _events_total(worker, "late") > 0, "no late events went through"
    assert _events_total(worker, "duplicate") > 0, "no duplicates went through"
    _no_tracebacks(ns, "w0")


def test_bad_input_interleaved_with_a_valid_stream(namespace):
    """Invalid payloads between the valid events of a seeded stream, on the same partitions."""
    events = _generated(5, 1800)
    invalid = list({(s, p): (s, p, r) for s, p, _, r in collect_invalid(1200)}.values())
    ns = namespace(idle_timeout_seconds=5, **BATCH)
    from shoppulse.streams.events import encode, key_of

    async def produce() -> dict[tuple[str, int, int], str]:
        rng = random.Random(5)
        bad = iter(invalid)
        producer = AIOKafkaProducer(bootstrap_servers=ns.broker, max_request_size=2 * 1024 * 1024)
        await producer.start()
        try:
            futures = []
            for stream, event in events:
                while rng.random() < len(invalid) / len(events):
                    item = next(bad, None)
                    if item is None:
                        break
                    # The valid stream's key, so invalid records land between its events.
                    futures.append((await producer.send(ns.topics[item[0]], item[1], key=b"bad"), item[2]))
                payload = msgspec.convert(event, type=dict)
                await producer.send(ns.topics[stream], encode(stream, payload), key=key_of(stream, payload))
            for stream, payload, reason in bad:
                futures.append((await producer.send(ns.topics[stream], payload, key=b"bad"), reason))
            sent = {}
            for future, reason in futures:
                meta = await future
                sent[(meta.topic, meta.partition, meta.offset)] = reason
            return sent
        finally:
            await producer.stop()

    assert ns.shoppulse("config", "check", "/dev/null").returncode in (0, 2)  # warm the CLI import cache
    sent = asyncio.run(produce())
    assert len(sent) >= 1000
    worker = ns.start_worker()
    _assert_matches(ns, events, [worker])
    letters = ns.read_to_end(ns.topics["dead_letters"])
    by_source = {(r["source_topic"], r["source_partition"], r["source_offset"]): r for r in letters}
    missing = [k for k in sent if k not in by_source]
    assert not missing, missing[:5]
    assert {k: by_source[k]["reason"] for k in sent} == sent
    assert len(letters) == len(sent), "dead letters for valid events, or twice for one record"
    assert _events_total(worker, "invalid") == len(sent)
    assert worker.poll() is None
    _no_tracebacks(ns, "w0")


async def _read_committed(broker: str, topic: str, timeout: float = 60.0) -> list[dict]:
    """Every committed record of a topic no longer written to, read_committed to its end."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=broker, isolation_level="read_committed", auto_offset_reset="earliest",
        enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    try:
        records: list[dict] = []
        deadline = time.monotonic() + timeout
        while not consumer.assignment() and time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=200)
        tps = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            assert time.monotonic() < deadline, f"{topic}: {len(records)} records read in {timeout:.0f} s"
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(orjson.loads(m.value) for m in messages)
        return records
    finally:
        await consumer.stop()


def _final_twice(records: list[dict]) -> list:
    counts = collections.Counter(oracle.key_of(r) for r in records if r["final"])
    return [key for key, n in counts.items() if n > 1]


def test_kill_9_at_random_moments_of_a_replay_stays_exact(namespace, tmp_path):
    """The only worker is killed with SIGKILL at 5 random moments while a replay runs, and
    restarted with the same data dir (same static member) each time."""
    events = _generated(11, 3600, rate=6, duplicate_fraction=0.01)
    path = tmp_path / "generated.jsonl"
    _write_jsonl(path, events)
    ns = namespace(idle_timeout_seconds=5, **BATCH)
    worker = ns.start_worker()
    deadline = time.monotonic() + 60
    while not _merging(worker):
        assert time.monotonic() < deadline and worker.poll() is None, ns.worker_log()
        time.sleep(0.2)
    # About 40 s of replay: a gap of N s of event time takes N / 90 s.
    replay = subprocess.Popen(
        [sys.executable, "-m", "shoppulse.cli", "replay", "jsonl", str(path), "--quiet", "--speed", "90"],
        env=ns.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    rng = random.Random(11)
    restarts: list[float] = []
    try:
        for kill in range(5):
            time.sleep(rng.uniform(2, 6))
            assert replay.poll() is None, f"the replay ended before kill {kill + 1}"
            worker.kill()
            worker.wait()
            time.sleep(rng.uniform(0, 1.5))
            worker = _start_worker(ns, f"w0-{kill + 1}", data_dir="w0")
            started = time.monotonic()
            _wait_for_events(ns, worker, 1, timeout=60, name=f"w0-{kill + 1}")
            restarts.append(time.monotonic() - started)
    finally:
        assert replay.wait(300) == 0, replay.stderr.read() if replay.stderr else ""
    expected = _assert_matches(ns, events, [worker])
    records = asyncio.run(_read_committed(ns.broker, ns.topics["results"]))
    assert not _update_contract_problems(records)
    twice = _final_twice(records)
    assert not twice, f"{len(twice)} finals seen twice read_committed, e.g. {twice[:3]}"
    finals = {oracle.key_of(r) for r in records if r["final"]}
    assert oracle.required_keys(expected) <= finals, "a final is missing for a read_committed reader"
    assert max(restarts) < 15, f"processing again after {restarts} s"


def _merging(worker) -> bool:
    """The worker holds the merge stage once it exports a window gauge or the clock heartbeat ran:
    here, once /metrics answers and it reports a consumer lag for every source topic."""
    try:
        return "shoppulse_consumer_lag" in _scrape(worker)
    except OSError:
        return False
