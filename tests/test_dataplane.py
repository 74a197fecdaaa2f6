"""The data plane (agents/dataplane.py, agents/task.py) against the batch recomputation
(tests/oracle.py), through the real broker and real worker processes, where exactness is
hardest (the three real samples and generated traffic are in test_kpis_kafka.py):

- bad input interleaved with a valid stream: every invalid record dead-lettered with its
  reason, topic, partition and offset, the valid stream's KPIs exact;
- the only worker stopped at random moments of a live replay, by kill -9 or SIGTERM, and
  restarted each time on the same data dir (so from its local copy of the changelogs): exact,
  no final missing, and no final twice for a read_committed reader of kpi-results;
- a second worker joining during a live replay, and later one of the two leaving during it
  (SIGTERM; kill -9 in another test): exact, every final once for a read_committed reader;
- the broker stopped for 20 s while the worker works through a backlog, then started again:
  the worker resumes by itself, exact, every final once.
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
from conftest import Namespace
from test_bad_input import _scrape, _wait_for_metrics, collect_invalid
from test_kpis_kafka import (
    ORACLE_SETTINGS,
    QUICK_CLOSE,
    _events_total,
    _update_contract_problems,
)

from shoppulse.kafka.broker import LocalKafka, free_port
from shoppulse.streams.events import encode, key_of
from shoppulse.tools.generate import GeneratorConfig, generate_events

pytestmark = pytest.mark.integration

# The broker's smallest group session (group.min.session.timeout.ms): a static member that is
# gone, even after a clean stop, holds its partitions this long.
# Short windows, grace and sessions (test_kpis_kafka.py QUICK_CLOSE): the last windows close soon.
QUICK = {"group_session_timeout_seconds": 6, **QUICK_CLOSE}


def _generated(seed: int, duration_s: int, rate: float = 8, **config) -> list[tuple[str, dict]]:
    pairs = generate_events(
        GeneratorConfig(rate=rate, seed=seed, **config), start_ms=1_700_000_000_000, duration_s=duration_s
    )
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
    command = [
        sys.executable,
        "-m",
        "shoppulse.cli",
        "worker",
        "--data-dir",
        str(ns.tmp_path / data_dir),
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
    ]
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


def test_bad_input_interleaved_with_a_valid_stream(namespace):
    """Invalid payloads between the valid events of a seeded stream, on the same partitions:
    each dead-lettered once with its reason, topic, partition and offset; the KPIs exact."""
    pairs = list(generate_events(GeneratorConfig(rate=8, seed=5), start_ms=1_700_000_000_000, duration_s=1800))
    events = [(stream, msgspec.to_builtins(event)) for stream, event in pairs]
    # At least 10,000 distinct invalid payloads (hypothesis repeats a few of its examples).
    invalid = list({(s, p): (s, p, r) for s, p, _, r in collect_invalid(12_000)}.values())
    ns = namespace(idle_timeout_seconds=5, **QUICK)
    worker = ns.start_worker()
    _wait_for_metrics(worker.metrics_port, ns)  # the worker has created the topics

    async def produce() -> dict[tuple[str, int, int], str]:
        rng = random.Random(5)
        bad = iter(invalid)
        producer = AIOKafkaProducer(bootstrap_servers=ns.broker, max_request_size=2 * 1024 * 1024)
        await producer.start()
        try:
            futures = []
            for stream, event in pairs:
                key = key_of(stream, event).encode()
                if rng.random() < len(invalid) / len(pairs):
                    item = next(bad, None)
                    if item is not None:  # with a valid event's key: on its partition, before it
                        futures.append((await producer.send(ns.topics[item[0]], item[1], key=key), item[2]))
                await producer.send(ns.topics[stream], encode(event), key=key)
            for stream, payload, reason in bad:
                futures.append((await producer.send(ns.topics[stream], payload, key=b"bad"), reason))
            sent = {}
            for future, reason in futures:
                meta = await future
                sent[(meta.topic, meta.partition, meta.offset)] = reason
            return sent
        finally:
            await producer.stop()

    sent = asyncio.run(produce())
    assert len(sent) >= 10_000
    _assert_exactly_once(ns, events, ["w0"])
    letters = ns.read_to_end(ns.topics["dead_letters"])
    by_source = {(r["source_topic"], r["source_partition"], r["source_offset"]): r for r in letters}
    missing = [k for k in sent if k not in by_source]
    assert not missing, missing[:5]
    assert {k: by_source[k]["reason"] for k in sent} == sent
    assert len(letters) == len(sent), "dead letters for valid events, or two for one record"
    assert all(letter["payload_encoding"] in ("utf-8", "base64") for letter in letters)
    assert _events_total(worker, "invalid") == len(sent)
    counted = [
        line for line in _scrape(worker.metrics_port).splitlines() if line.startswith("shoppulse_dead_letters_total")
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) == len(sent), counted
    assert worker.poll() is None
    _no_tracebacks(ns, "w0")


def _expected(events) -> dict:
    """The oracle over the events, with the settings of test_kpis_kafka.py (`QUICK_CLOSE`)."""
    smallest = int(str(QUICK_CLOSE["windows_seconds"]).split(",")[0])
    kept, _late = oracle.drop_late(events, grace_s=float(QUICK_CLOSE["grace_seconds"]), smallest_window_s=smallest)
    return oracle.compute(kept, **ORACLE_SETTINGS)


async def _read_committed(broker: str, topic: str, *, until, quiet_seconds: float, timeout: float) -> list[dict]:
    """Records of a topic as a read_committed consumer sees them, from the start until `until`
    holds and nothing new came for `quiet_seconds` (or `timeout`)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[dict] = []
    deadline = last_new = time.monotonic()
    deadline += timeout
    try:
        while time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(orjson.loads(m.value) for m in messages)
                last_new = time.monotonic()
            if until(records) and time.monotonic() - last_new > quiet_seconds:
                break
    finally:
        await consumer.stop()
    return records


def _assert_exactly_once(ns, events, workers=()) -> dict:
    """For a read_committed reader of kpi-results: every expected final, each once, equal to the
    oracle, and the update contract (no non-final after a final, updates a second apart)."""
    expected = _expected(events)
    wanted = oracle.required_keys(expected)

    def complete(records: list[dict]) -> bool:
        return wanted <= {oracle.key_of(r) for r in records if r["final"]}

    records = asyncio.run(
        _read_committed(ns.broker, ns.topics["results"], until=complete, quiet_seconds=8, timeout=300)
    )
    logs = "\n".join(ns.worker_log(w) for w in workers)
    contract = _update_contract_problems(records)
    finals = [r for r in records if r["final"]]
    counts = collections.Counter(oracle.key_of(r) for r in finals)
    twice = [key for key, n in counts.items() if n > 1]
    assert not twice, f"{len(twice)} finals seen twice by a read_committed reader, e.g. {twice[:3]}"
    missing = wanted - set(counts)
    assert not missing, f"{len(missing)} finals missing, e.g. {sorted(missing, key=str)[:3]}\n{logs}"
    problems = oracle.compare(expected, finals)
    assert not problems, "\n".join(problems[:30]) + f"\n{len(problems)} problems\n{logs}"
    assert not contract, "\n".join(contract[:20])  # after the exactness checks, which say more
    return expected


def _live_replay(ns, path, speed: float) -> subprocess.Popen:
    """A replay at `speed` times event time, in the background: records keep coming while
    workers are killed, join and leave (events in time order, so none is late)."""
    command = [sys.executable, "-m", "shoppulse.cli", "replay", "jsonl", str(path), "--quiet", "--speed", str(speed)]
    return subprocess.Popen(command, env=ns.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_kill_9_and_sigterm_at_random_moments_of_a_replay_stay_exactly_once(namespace, tmp_path):
    """The only worker is stopped at 5 random moments of a replay, by SIGKILL three times and by
    SIGTERM twice, and restarted with the same data dir (the same static member, the same local
    copy of the changelogs) each time."""
    events = _generated(11, 3600, rate=10, duplicate_fraction=0.01)
    path = tmp_path / "generated.jsonl"
    _write_jsonl(path, events)
    ns = namespace(idle_timeout_seconds=5, **QUICK)
    worker = _start_worker(ns, "w0", "w0")
    _wait_for_metrics(worker.metrics_port, ns)  # the worker has created the topics
    replay = _live_replay(ns, path, speed=60)  # about 60 s
    rng = random.Random(11)
    restarts: list[float] = []
    _wait_for_events(ns, worker, 1)
    for kill in range(5):
        time.sleep(rng.uniform(1, 6))
        assert replay.poll() is None, f"the replay ended before stop {kill + 1}"
        if kill % 2:
            worker.terminate()
            assert worker.wait(60) == 0, "a SIGTERM stop must be clean"
        else:
            worker.kill()
            worker.wait()
        time.sleep(rng.uniform(0, 2))
        name = f"w0-{kill + 1}"
        worker = _start_worker(ns, name, "w0")
        started = time.monotonic()
        _wait_for_events(ns, worker, 1, timeout=60, name=name)  # its first committed checkpoint
        restarts.append(time.monotonic() - started)
    assert replay.wait(300) == 0, replay.stderr.read() if replay.stderr else ""
    _assert_exactly_once(ns, events, ["w0", *(f"w0-{k + 1}" for k in range(5))])
    assert max(restarts) < 15, f"processing again {[round(r, 1) for r in restarts]} s after a restart"


@pytest.mark.parametrize("leave", ["sigterm", "kill"])
def test_a_worker_joins_and_one_leaves_mid_replay_exactly_once(namespace, tmp_path, leave):
    """A second worker joins while the first works through a replay; later the first leaves
    (SIGTERM, or SIGKILL) while records keep coming, and the second finishes alone."""
    events = _generated(41, 3600, rate=10, duplicate_fraction=0.02)
    path = tmp_path / "generated.jsonl"
    _write_jsonl(path, events)
    ns = namespace(idle_timeout_seconds=5, **QUICK)
    first = _start_worker(ns, "w0", "w0")
    _wait_for_metrics(first.metrics_port, ns)
    replay = _live_replay(ns, path, speed=60)  # about 60 s
    _wait_for_events(ns, first, 1)
    time.sleep(5)
    second = _start_worker(ns, "w1", "w1")
    _wait_for_events(ns, second, 1, name="w1")  # it holds partitions and has checkpointed them
    assert replay.poll() is None, "the replay ended before the second worker joined"
    time.sleep(10)
    assert replay.poll() is None, "the replay ended before the first worker left"
    if leave == "sigterm":
        first.terminate()
        assert first.wait(60) == 0, ns.worker_log("w0")
    else:
        first.kill()
        first.wait()
    assert replay.wait(300) == 0, replay.stderr.read() if replay.stderr else ""
    _assert_exactly_once(ns, events, ["w0", "w1"])
    _no_tracebacks(ns, "w0", "w1")
    assert _events_total(second, "late") == 0, "events dead-lettered as late after the rebalances"


def test_broker_stopped_for_20_s_mid_backlog_the_worker_resumes_by_itself_exactly_once(tmp_path):
    """A broker of its own: stopped (SIGTERM) while the worker is a third of the way through a
    backlog, with transactions open; 20 s later started again on the same port and data."""
    events = _generated(23, 3600, rate=10, duplicate_fraction=0.01)
    half = len(events) // 2
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    _write_jsonl(first, events[:half])
    _write_jsonl(second, events[half:])
    broker = LocalKafka(port=0, data_dir=tmp_path / "kafka").start()
    ns = Namespace(broker, tmp_path, idle_timeout_seconds=5, **QUICK)
    try:
        worker = _start_worker(ns, "w0", "w0")
        _wait_for_metrics(worker.metrics_port, ns)
        _replay(ns, first, "--no-end-watermark")  # the second half follows: the stream does not end here
        _wait_for_events(ns, worker, half / 3)
        broker.stop()
        time.sleep(20)
        assert worker.poll() is None, "the worker exited while the broker was down\n" + ns.worker_log()
        broker.start()
        _wait_for_events(ns, worker, half * 0.9, timeout=180)  # it resumed by itself (less the duplicates)
        _replay(ns, second)
        _assert_exactly_once(ns, events, ["w0"])
        worker.terminate()
        assert worker.wait(60) == 0, ns.worker_log()
    finally:
        ns.stop_workers()
        broker.stop()
