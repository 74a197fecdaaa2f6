"""Checkpoints and restores of one task (agents/task.py, agents/restore.py), on the real broker
of the `kafka_broker` fixture.

What must hold:
- a checkpoint holds the state, the outputs and the input offset of the records fed before it
  was taken, and nothing fed while its transaction commits; those records go to the next
  checkpoint; the sensor hears of a checkpoint's records once it has committed;
- after each commit the task's local copy of the changelog (agents/localstate.py) holds the
  committed rows and the changelog offset after them;
- reopening with a trusted local copy reads only the changelog's tail, rows another owner
  committed meanwhile included, and gives the same state as a restore in full.

The expected changelog rows come from the core (`Pipeline`, durable) fed the same records in
the same slices, without Kafka.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shoppulse.agents.localstate import LocalChangelogs
from shoppulse.agents.restore import catch_up
from shoppulse.agents.source_task import SourceTask, StagedSource
from shoppulse.agents.task import TaskContext
from shoppulse.kafka.admin import ensure_topics
from shoppulse.outputs.base import Sensor, SourceTally
from shoppulse.settings import Settings, TopicNames
from shoppulse.streams.cold import MemoryStore
from shoppulse.streams.events import encode, key_of
from shoppulse.streams.pipeline import Pipeline, RawRecord
from shoppulse.streams.state_keys import state_rows
from shoppulse.tools.generate import GeneratorConfig, generate_events

pytestmark = pytest.mark.integration

START_MS = 1_780_000_000_000
NOW_MS = START_MS + 3_600_000


def order_values(n: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of the first `n` generated orders events."""
    out = []
    for stream, event in generate_events(GeneratorConfig(rate=2000, seed=3), START_MS, 3600):
        if stream == "orders":
            out.append((key_of(stream, event).encode(), encode(event)))
            if len(out) == n:
                return out
    raise AssertionError(f"the timeline gave {len(out)} orders")


def settings_for(broker: str) -> Settings:
    tag = uuid.uuid4().hex[:8]
    names = {name: f"{name}-{tag}" for name in ("clickstream", "orders", "tickets")}
    topics = TopicNames(**names, results=f"kpi-results-{tag}", dead_letters=f"kpi-dead-letters-{tag}")
    return Settings(broker=broker, app_id=f"ckpt-{tag}", topics=topics, partitions=1)


async def produce_and_read(settings: Settings, values: list[tuple[bytes, bytes]]) -> list:
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker)
    await producer.start()
    try:
        for key, value in values:
            await producer.send(settings.topics.orders, value, key=key, partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False)
    await consumer.start()
    tp = TopicPartition(settings.topics.orders, 0)
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records: list = []
        while len(records) < len(values):
            for batch in (await consumer.getmany(tp, timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def changelog_rows(settings: Settings, changelog: TopicPartition) -> dict[str, bytes]:
    """The committed state as a new owner without a local copy reads it: read_committed from the
    changelog's start, the latest value per key."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.broker, isolation_level="read_committed", enable_auto_commit=False
    )
    await reader.start()
    rows: dict[bytes, bytes] = {}
    try:
        reader.assign([changelog])
        await reader.seek_to_beginning(changelog)
        end = (await reader.end_offsets([changelog]))[changelog]
        while await reader.position(changelog) < end:
            for record in (await reader.getmany(changelog, timeout_ms=500)).get(changelog, []):
                if record.value is None:
                    rows.pop(record.key, None)
                else:
                    rows[record.key] = record.value
    finally:
        await reader.stop()
    return dict(state_rows(changelog.partition, rows.items()))


def local_rows(local: LocalChangelogs, changelog: TopicPartition) -> dict[str, bytes]:
    return dict(state_rows(changelog.partition, local.rows(changelog)))


async def changelog_end(settings: Settings, changelog: TopicPartition) -> int:
    reader = AIOKafkaConsumer(bootstrap_servers=settings.broker, isolation_level="read_committed")
    await reader.start()
    try:
        return (await reader.end_offsets([changelog]))[changelog]
    finally:
        await reader.stop()


async def committed_offset(settings: Settings, tp: TopicPartition) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.app_id, partitions=[tp])
    finally:
        await admin.close()
    return offsets[tp].offset if tp in offsets else -1


async def settled(probe, expected, timeout: float = 10.0):
    """The commit's markers reach the changelog and the group's offsets a moment after EndTxn."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await probe()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"still {value!r}, expected {expected!r}"
        await asyncio.sleep(0.05)


def core_rows(settings: Settings, slices: list[list]) -> list[dict[str, bytes]]:
    """The orders partition's state after each slice, as the core writes it."""
    pipeline = Pipeline(settings, durable=True)
    after = []
    for records in slices:
        raw = [RawRecord(r.offset, r.value, r.key, r.timestamp) for r in records]
        pipeline.feed("orders", 0, raw, NOW_MS)
        after.append(dict(pipeline.stores[("orders", 0)]))
    return after


class CommittedEvents(Sensor):
    def __init__(self) -> None:
        self.events = 0

    def on_source_committed(self, topic: str, tally: SourceTally) -> None:
        self.events += sum(tally.outcomes.values())


def test_records_fed_while_a_checkpoint_commits_go_to_the_next_one(kafka_broker, tmp_path):
    async def scenario() -> None:
        settings = settings_for(kafka_broker.bootstrap)
        await ensure_topics(settings)
        records = await produce_and_read(settings, order_values(400))
        first, second = records[:250], records[250:]
        expected_first, expected_both = core_rows(settings, [first, second])
        assert expected_first != expected_both, "the second slice must change the state"

        tp = TopicPartition(settings.topics.orders, 0)
        source = StagedSource("orders", settings, MemoryStore())
        sensor = CommittedEvents()
        local = LocalChangelogs(tmp_path / "local")
        task = SourceTask(tp, TaskContext(settings, settings.app_id, sensor, local), source)
        await task.start_producer()
        try:
            task.restore((), None)
            task.feed(first, NOW_MS)
            assert task.start_checkpoint()
            assert task.committing
            task.feed(second, NOW_MS)  # while the first checkpoint's transaction commits
            with pytest.raises(AssertionError, match="still committing"):
                task.start_checkpoint()
            assert sensor.events == 0, "counted before its checkpoint committed"
            await task.finish_checkpoint()
            assert not task.committing and task.committed == 250
            assert sensor.events == 250, "the sensor hears of the first checkpoint's records only"

            await settled(lambda: committed_offset(settings, tp), 250)
            assert await changelog_rows(settings, task.changelog) == expected_first
            assert local_rows(local, task.changelog) == expected_first
            # The copy's offset is after its last row: the commit marker that follows it is the end.
            await settled(lambda: changelog_end(settings, task.changelog), local.offset(task.changelog)[0] + 1)

            assert await task.checkpoint()
            assert task.committed == 400 and sensor.events == 400
            await settled(lambda: committed_offset(settings, tp), 400)
            assert await changelog_rows(settings, task.changelog) == expected_both
            assert local_rows(local, task.changelog) == expected_both
            assert not await task.checkpoint(), "nothing fed since: nothing to write"
        finally:
            await task.close()
            local.close()

    asyncio.run(scenario())


def test_a_trusted_local_copy_is_caught_up_from_the_tail_another_owner_wrote(kafka_broker, tmp_path):
    """Owner A checkpoints 150 records and lets go; owner B, without a local copy, restores in
    full and checkpoints 250 more; A reopens from its own copy: it reads only B's rows and gets
    B's state. A copy whose offset the changelog no longer has is restored in full."""

    async def owner(settings, records, local, expect_full: bool, expect_read: int | None):
        tp = TopicPartition(settings.topics.orders, 0)
        source = StagedSource("orders", settings, MemoryStore())
        task = SourceTask(tp, TaskContext(settings, settings.app_id, Sensor(), local), source)
        reader = AIOKafkaConsumer(
            bootstrap_servers=settings.broker, isolation_level="read_committed", enable_auto_commit=False
        )
        await reader.start()
        await task.start_producer()  # fences the previous owner
        try:
            (restored,) = await catch_up(reader, local, [task.changelog])
            assert restored.full is expect_full
            if expect_read is not None:
                assert restored.records == expect_read
            task.restore(local.rows(task.changelog), None)
            if records:
                task.feed(records, NOW_MS)
                assert await task.checkpoint()
            return restored, task.changelog
        finally:
            await task.close()
            await reader.stop()

    async def scenario() -> None:
        settings = settings_for(kafka_broker.bootstrap)
        await ensure_topics(settings)
        records = await produce_and_read(settings, order_values(400))
        first, second = records[:150], records[150:]
        a, b = LocalChangelogs(tmp_path / "a"), LocalChangelogs(tmp_path / "b")
        try:
            await owner(settings, first, a, expect_full=True, expect_read=0)
            (a_offset, _) = a.offset(TopicPartition(f"{settings.app_id}-orders-state-changelog", 0))
            restored_b, changelog = await owner(settings, second, b, expect_full=True, expect_read=None)
            assert restored_b.records >= a_offset, "B restored A's rows from the changelog's start"
            rows_written_by_b = len(local_rows(b, changelog))
            # A again: only the tail after its copy, and the state B left.
            restored_a, _ = await owner(settings, [], a, expect_full=False, expect_read=None)
            assert 0 < restored_a.records < restored_b.records + rows_written_by_b
            assert local_rows(a, changelog) == local_rows(b, changelog) == await changelog_rows(settings, changelog)
            # A copy ahead of the changelog (the topic deleted and created again) is not trusted.
            a.write(changelog, [], 10**9, int(time.time() * 1000))
            await owner(settings, [], a, expect_full=True, expect_read=None)
            assert local_rows(a, changelog) == local_rows(b, changelog)
        finally:
            a.close()
            b.close()

    asyncio.run(scenario())
