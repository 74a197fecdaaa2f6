"""Shared fixtures: a real Apache Kafka broker (the `shoppulse kafka` launcher) and workers."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shoppulse.kafka.broker import LocalKafka, free_port

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

# About how long the slowest tests take (s, `--durations` of 3 xdist workers on 2 busy cores). scripts/test.sh
# runs the suite on pytest-xdist workers, which take tests in collection order: the longest go first,
# so that the many short ones fill in at the end rather than one long test starting last.
SLOW_S = {
    "test_event_time_kafka.py::test_worker_first_then_every_sample_at_any_speed_is_exact_and_late_stays_late": 370,
    "test_prometheus_live.py::test_dashboards_queries_and_alerts_on_a_real_prometheus": 290,
    "test_demo.py::test_fresh_demo_closes_windows_with_sessions_orders_and_tickets_within_3_minutes": 225,
    "test_demo.py::test_checkout_outage_shows_zero_conversion_and_leaves_nothing_running": 230,
    "test_kpis_kafka.py::test_real_sample_through_kafka_matches_batch_recomputation[online-retail]": 170,
    "test_kpis_kafka.py::test_real_sample_through_kafka_matches_batch_recomputation[incident-log]": 160,
    "test_dataplane.py::test_bad_input_interleaved_with_a_valid_stream": 160,
    "test_kpis_kafka.py::test_real_sample_through_kafka_matches_batch_recomputation[rees46]": 150,
    "test_dataplane.py::test_broker_stopped_for_20_s_mid_backlog_the_worker_resumes_by_itself_exactly_once": 150,
    "test_dataplane.py::test_kill_9_and_sigterm_at_random_moments_of_a_replay_stay_exactly_once": 135,
    "test_failed_checkpoint.py::test_fenced_checkpoints_mid_replay_count_every_metric_once": 130,
    "test_dataplane.py::test_a_worker_joins_and_one_leaves_mid_replay_exactly_once": 135,
    "test_metrics_scrape.py::test_metrics_families_names_and_counters": 100,
    "test_kpis_kafka.py::test_worker_stalled_mid_backlog_for_longer_than_the_idle_timeout_loses_nothing": 95,
    "test_outage.py::test_checkout_outage_drives_conversion_to_zero": 90,
    "test_kpis_kafka.py::test_two_workers_share_the_partitions_and_stay_exact": 90,
    "test_kpis_kafka.py::test_generated_traffic_through_kafka_matches_batch_recomputation": 85,
    "test_event_time_kafka.py::test_sparse_partitions_on_two_workers_are_exact": 85,
    "test_event_time_kafka.py::test_when_all_traffic_stops_the_following_windows_close_as_zeros": 70,
    # The first test of a module in TOGETHER stands for the module.
    "test_tail.py::test_tail_json_final_only_prints_every_final_record": 70,
    "test_kpis_inprocess.py::test_generated_traffic_with_late_events_and_duplicates": 40,
    "test_prometheus_rules.py::test_checked_in_rules_match_the_catalogue": 45,
    "test_kpis_inprocess.py::test_restart_from_written_state_gives_the_same_results": 30,
    "test_sasl.py::test_worker_replay_and_tail_over_sasl_scram": 25,
    "test_kpis_inprocess.py::test_real_sample_matches_batch_recomputation": 15,
    "test_checkpoint_commit.py::test_records_fed_while_a_checkpoint_commits_go_to_the_next_one": 12,
    "test_checkpoint_commit.py::test_a_trusted_local_copy_is_caught_up_from_the_tail_another_owner_wrote": 20,
}


# Modules whose tests one xdist worker must run whole, in order.
TOGETHER = {
    "test_tail.py": "its tests share the module's replay (`replayed`), made once",
    "test_prometheus_rules.py": "its last test checks what the others recorded",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest tests first, longest first; the rest in their usual order."""

    def seconds(item: pytest.Item) -> float:
        nodeid = item.nodeid.removeprefix("tests/")
        return SLOW_S.get(nodeid, SLOW_S.get(nodeid.split("[")[0], 0))

    items.sort(key=seconds, reverse=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`-n N` (`--dist load`): each test goes to the next free worker in collection order, except
    the modules in TOGETHER, which go whole to one. (xdist's own `loadgroup` does not group on
    this pytest: it renames `item._nodeid`, which pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduler(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module.rsplit("/", 1)[-1] in TOGETHER else nodeid

    config.option.loadscopereorder = False  # keep the collection order: the slowest first
    return Scheduler(config, log)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> LocalKafka:
    """One KRaft broker for the whole test session, on a free port, in a temp dir.

    Its cluster id starts with "-", as about 1 in 64 random ids do: formatting once read such an id as a flag.
    """
    dash_id = base64.urlsafe_b64encode(bytes([0xF8]) + os.urandom(15)).decode().rstrip("=")
    broker = LocalKafka(
        port=0, data_dir=tmp_path_factory.mktemp("kafka"), scram_users={"shoppulse": "s3cret"}, cluster_id=dash_id
    )
    broker.start()
    yield broker
    broker.stop()


class Namespace:
    """Unique topic names and app id for one test, passed to every process as SHOPPULSE_* env."""

    def __init__(self, broker: LocalKafka, tmp_path: Path, **settings: str):
        tag = uuid.uuid4().hex[:8]
        self.broker = broker.bootstrap
        self.app_id = f"sp-{tag}"
        self.topics = {name: f"{name}-{tag}" for name in ("clickstream", "orders", "tickets")}
        self.topics["results"] = f"kpi-results-{tag}"
        self.topics["dead_letters"] = f"kpi-dead-letters-{tag}"
        self.tmp_path = tmp_path
        self.env = dict(os.environ)
        self.env.update({f"SHOPPULSE_TOPICS__{k.upper()}": v for k, v in self.topics.items()})
        self.env.update({"SHOPPULSE_APP_ID": self.app_id, "SHOPPULSE_BROKER": self.broker})
        self.env.update({f"SHOPPULSE_{k.upper()}": str(v) for k, v in settings.items()})
        self.workers: list[subprocess.Popen] = []

    def shoppulse(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "shoppulse.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_worker(self, name: str = "w0", metrics_port: int | None = None) -> subprocess.Popen:
        port = metrics_port or free_port()
        log = open(self.tmp_path / f"{name}.log", "w")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shoppulse.cli",
                "worker",
                "--data-dir",
                str(self.tmp_path / name),
                "--metrics-port",
                str(port),
                "--metrics-host",
                "127.0.0.1",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        proc.metrics_port = port  # type: ignore[attr-defined]
        self.workers.append(proc)
        return proc

    def stop_workers(self) -> None:
        for proc in self.workers:
            proc.terminate()
        for proc in self.workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def worker_log(self, name: str = "w0") -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")[-5000:]

    def read_topic(self, topic: str, *, quiet_seconds: float = 10.0, timeout: float = 240.0, until=None) -> list[dict]:
        return asyncio.run(read_topic(self.broker, topic, quiet_seconds=quiet_seconds, timeout=timeout, until=until))

    def read_to_end(self, topic: str, timeout: float = 60.0) -> list[dict]:
        return asyncio.run(read_to_end(self.broker, topic, timeout=timeout))


async def read_topic(broker: str, topic: str, *, quiet_seconds: float, timeout: float, until=None) -> list[dict]:
    """Read JSON records from the start until `until(records)` is true and nothing new came for
    `quiet_seconds`, or `timeout` passes."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    records: list[dict] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    records.append(orjson.loads(message.value))
                    last_new = time.monotonic()
            done = until(records) if until else bool(records)
            if done and time.monotonic() - last_new > quiet_seconds:
                break
    finally:
        await consumer.stop()
    return records


async def read_to_end(broker: str, topic: str, *, timeout: float) -> list[dict]:
    """Every JSON record of a topic that is no longer written to: read up to its end offsets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        (described,) = await asyncio.wait_for(admin.describe_topics([topic]), timeout)
    finally:
        await admin.close()
    if described["error_code"]:  # the topic does not exist: nothing was written
        return []
    tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[dict] = []
        deadline = time.monotonic() + timeout
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            assert time.monotonic() < deadline, (
                f"{topic}: {len(records)} records read in {timeout:.0f} s, short of {ends}"
            )
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(orjson.loads(m.value) for m in messages)
        return records
    finally:
        await consumer.stop()


@pytest.fixture
def namespace(kafka_broker, tmp_path):
    created: list[Namespace] = []

    def make(**settings) -> Namespace:
        ns = Namespace(kafka_broker, tmp_path, **settings)
        created.append(ns)
        return ns

    yield make
    for ns in created:
        ns.stop_workers()
