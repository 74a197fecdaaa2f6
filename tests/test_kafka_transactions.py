"""What the batch data plane (issue 12) needs from aiokafka 0.14.0, proven on our Kafka 4.1.1.

aiokafka's own CI stops at Kafka 2.8, and aiokafka speaks only v0 of the transactional
requests (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn) and
JoinGroup v5 / LeaveGroup v1. These tests run against the real broker of the `kafka_broker`
fixture, no mocks:

- a committed transaction is visible to read_committed consumers, an aborted one is not
  (it still is to read_uncommitted ones);
- `send_offsets_to_transaction` commits consumer-group offsets with the records: visible
  once committed, unchanged after an abort, and not visible while the transaction is open;
- a second producer with the same `transactional_id` fences the first: the zombie's next
  send, offsets or commit raises `aiokafka.errors.ProducerFenced`, and its open transaction
  is aborted;
- a producer killed with SIGKILL mid-transaction blocks read_committed readers of that
  partition at the last stable offset, even for records other producers commit later; the
  next producer with the same id aborts it at `start()` (not after transaction.timeout.ms)
  and a read_committed restore to the end then sees every committed record and nothing else;
- static membership (`group_instance_id`): a member killed with SIGKILL and restarted with
  the same id gets its partitions back at once, without a rebalance; one that stays away
  keeps its partitions unowned until its session expires (aiokafka sends no LeaveGroup for
  static members, even on a clean stop).
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import ProducerFenced
from aiokafka.structs import OffsetAndMetadata, TopicPartition

pytestmark = pytest.mark.integration
T = TypeVar("T")


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """After a fenced `send_offsets_to_transaction`, aiokafka's producer is in FATAL_ERROR and its
    transaction waiter holds the ProducerFenced that no one retrieves (`abort_transaction` then
    fails an `assert` on the state transition before awaiting it), in a reference cycle. Collect
    it after each test, so that asyncio logs "Future exception was never retrieved" here: from a
    GC run inside a later ast.parse (pytest rewriting hypothesis at the session's end), that log's
    traceback formatting calls ast.parse again, the nested parse resets the depth counter the
    outer one keeps, and CPython 3.11.7 raises "SystemError: AST constructor recursion depth
    mismatch" (seen here; that check's history: CPython gh-106905)."""
    yield
    gc.collect()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def create_topic(broker: str, partitions: int = 1, prefix: str = "txn") -> str:
    name = unique(prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def transactional(broker: str, transactional_id: str, **options: Any) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=broker, transactional_id=transactional_id, **options)
    await producer.start()
    return producer


async def end_offset(broker: str, topic: str, isolation_level: str) -> int:
    """The end of partition 0 as a consumer of that isolation level sees it: the last stable offset
    for read_committed, the high watermark for read_uncommitted."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, isolation_level=isolation_level)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


async def eventually(probe: Callable[[], Awaitable[T]], expected: T, timeout: float = 5.0) -> float:
    """Seconds until `await probe()` returns `expected`. EndTxn returns once the coordinator has
    logged the decision; the markers on the data partitions and in the group's offsets follow
    asynchronously, so what a commit makes visible becomes visible a moment later."""
    started = time.monotonic()
    while (value := await probe()) != expected:
        assert time.monotonic() - started < timeout, f"still {value!r} after {timeout} s, expected {expected!r}"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def settled(broker: str, topic: str, high_watermark: int) -> None:
    """Wait until the topic has `high_watermark` and no transaction is in flight on it (LSO = HW)."""
    await eventually(lambda: end_offset(broker, topic, "read_uncommitted"), high_watermark)
    await eventually(lambda: end_offset(broker, topic, "read_committed"), high_watermark)


async def read_to_end(broker: str, topic: str, isolation_level: str, timeout: float = 15.0) -> tuple[list[bytes], int]:
    """Every value of a 1-partition topic up to the end offset the consumer sees (see
    `end_offset`). Returns (values, end)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, isolation_level=isolation_level, enable_auto_commit=False)
    await consumer.start()
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while await consumer.position(tp) < end:
            assert time.monotonic() < deadline, f"{topic} {isolation_level}: at {await consumer.position(tp)} of {end}"
            for messages in (await consumer.getmany(tp, timeout_ms=200)).values():
                values.extend(m.value for m in messages if m.value is not None)
        return values, end
    finally:
        await consumer.stop()


async def committed_offset(broker: str, group: str, tp: TopicPartition) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    return offsets[tp].offset if tp in offsets else -1


async def test_commit_is_visible_and_abort_is_not(kafka_broker) -> None:
    topic = await create_topic(kafka_broker.bootstrap)
    producer = await transactional(kafka_broker.bootstrap, unique("tid"))
    try:
        async with producer.transaction():
            for i in range(3):
                await producer.send(topic, f"committed-{i}".encode())
        await producer.begin_transaction()
        for i in range(3):
            await producer.send(topic, f"aborted-{i}".encode())
        await producer.flush()  # the aborted records are on the log, not only in the buffer
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, b"committed-3")
    finally:
        await producer.stop()

    # 7 records and 3 control records (commit, abort, commit markers); then no transaction is open.
    await settled(kafka_broker.bootstrap, topic, 10)
    committed, committed_end = await read_to_end(kafka_broker.bootstrap, topic, "read_committed")
    everything, end = await read_to_end(kafka_broker.bootstrap, topic, "read_uncommitted")
    assert committed == [b"committed-0", b"committed-1", b"committed-2", b"committed-3"]
    assert everything == [
        b"committed-0",
        b"committed-1",
        b"committed-2",
        b"aborted-0",
        b"aborted-1",
        b"aborted-2",
        b"committed-3",
    ]
    assert committed_end == end == 10


async def test_offsets_commit_atomically_with_the_records(kafka_broker) -> None:
    broker = kafka_broker.bootstrap
    source, sink = await create_topic(broker, prefix="src"), await create_topic(broker, prefix="out")
    group = unique("group")
    tp = TopicPartition(source, 0)
    async with AIOKafkaProducer(bootstrap_servers=broker) as plain:
        for i in range(15):
            await plain.send(source, f"in-{i}".encode())
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    producer = await transactional(broker, unique("tid"))

    async def process(count: int) -> int:
        """Read `count` records, write one output each and put the next offset in the transaction."""
        done = 0
        while done < count:
            for messages in (await consumer.getmany(tp, timeout_ms=500, max_records=count - done)).values():
                for message in messages:
                    await producer.send(sink, b"out-" + (message.value or b""))
                    done += 1
        position = await consumer.position(tp)
        await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(position, "")}, group)
        return position

    try:
        await producer.begin_transaction()
        assert await process(10) == 10
        await producer.flush()
        assert await committed_offset(broker, group, tp) == -1, "offsets of an open transaction are not visible"
        await producer.commit_transaction()
        await eventually(lambda: committed_offset(broker, group, tp), 10)
        await settled(broker, sink, 11)  # 10 records, 1 commit marker
        assert len((await read_to_end(broker, sink, "read_committed"))[0]) == 10

        await producer.begin_transaction()
        assert await process(5) == 15
        await producer.flush()
        await producer.abort_transaction()
        await settled(broker, sink, 17)  # 5 more records, 1 abort marker
        assert await committed_offset(broker, group, tp) == 10, "an aborted transaction leaves the offsets as they were"
        assert len((await read_to_end(broker, sink, "read_committed"))[0]) == 10
        assert len((await read_to_end(broker, sink, "read_uncommitted"))[0]) == 15

        # A new member of the group resumes at the committed offset and redoes the aborted batch.
        await consumer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker,
            group_id=group,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        consumer.assign([tp])
        assert await consumer.position(tp) == 10, "resumes at the committed offset"
        await producer.begin_transaction()
        assert await process(5) == 15
        await producer.commit_transaction()
    finally:
        await producer.stop()
        await consumer.stop()
    await eventually(lambda: committed_offset(broker, group, tp), 15)
    await settled(broker, sink, 23)
    outputs, _ = await read_to_end(broker, sink, "read_committed")
    assert outputs == [f"out-in-{i}".encode() for i in range(15)], "each input exactly once"


@pytest.mark.parametrize("next_call", ["send", "send_offsets", "commit"])
async def test_a_new_producer_fences_the_old_one(kafka_broker, next_call: str) -> None:
    broker = kafka_broker.bootstrap
    topic = await create_topic(broker)
    tid = unique("tid")
    zombie = await transactional(broker, tid)
    successor: AIOKafkaProducer | None = None
    try:
        async with zombie.transaction():
            await zombie.send(topic, b"zombie-committed")
        await zombie.begin_transaction()
        await zombie.send_and_wait(topic, b"zombie-open")
        successor = await transactional(broker, tid)  # InitProducerId bumps the epoch, aborting the open transaction
        with pytest.raises(ProducerFenced):
            if next_call == "send":
                await zombie.send_and_wait(topic, b"zombie-after-fence")
            elif next_call == "send_offsets":
                await zombie.send_offsets_to_transaction({TopicPartition(topic, 0): OffsetAndMetadata(1, "")}, "g")
            else:
                await zombie.commit_transaction()
        async with successor.transaction():
            await successor.send(topic, b"successor")
    finally:
        await zombie.stop()  # a fenced producer still stops cleanly
        if successor:
            await successor.stop()
    # zombie: 1 record and its commit marker, 1 record of the open transaction and the abort
    # marker the successor's InitProducerId writes; successor: 1 record and its commit marker.
    await settled(broker, topic, 6)
    committed, _ = await read_to_end(broker, topic, "read_committed")
    everything, _ = await read_to_end(broker, topic, "read_uncommitted")
    assert committed == [b"zombie-committed", b"successor"]
    assert b"zombie-open" in everything and b"zombie-after-fence" not in everything


# A producer that opens a transaction, writes to it, says so and waits to be killed.
OPEN_TRANSACTION = """
import asyncio, sys
from aiokafka import AIOKafkaProducer

async def main(broker, topic, tid):
    producer = AIOKafkaProducer(bootstrap_servers=broker, transactional_id=tid, transaction_timeout_ms=60000)
    await producer.start()
    await producer.begin_transaction()
    for i in range(3):
        await producer.send_and_wait(topic, f"open-{i}".encode())
    print("open", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:4]))
"""


async def test_read_committed_restore_after_a_producer_is_killed_mid_transaction(kafka_broker) -> None:
    broker = kafka_broker.bootstrap
    topic = await create_topic(broker, prefix="changelog")
    tid = unique("tid")
    checkpoint = await transactional(broker, tid)
    try:
        async with checkpoint.transaction():
            for i in range(5):
                await checkpoint.send(topic, f"state-{i}".encode())  # offsets 0-4, commit marker at 5
    finally:
        await checkpoint.stop()

    doomed = subprocess.Popen(
        [sys.executable, "-c", OPEN_TRANSACTION, broker, topic, tid],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(doomed.stdout.readline), 30)  # type: ignore[union-attr]
        assert line.strip() == "open", doomed.stderr.read() if doomed.poll() is not None else line  # type: ignore[union-attr]
    finally:
        doomed.kill()  # SIGKILL: no abort, no flush, the transaction stays open on the broker
        doomed.wait()
    # Another producer commits after the dead one's open records (offsets 6-8): offsets 9, marker 10.
    other = await transactional(broker, unique("tid"))
    try:
        async with other.transaction():
            await other.send(topic, b"other-committed")
    finally:
        await other.stop()

    await eventually(lambda: end_offset(broker, topic, "read_uncommitted"), 11)
    state, lso = await read_to_end(broker, topic, "read_committed")
    _, high_watermark = await read_to_end(broker, topic, "read_uncommitted")
    assert (lso, high_watermark) == (6, 11), "the open transaction holds the last stable offset at its first record"
    assert state == [f"state-{i}".encode() for i in range(5)], "records committed later wait behind the open one"

    # The partition's next owner starts a producer with the same id: InitProducerId aborts the
    # dead one's transaction now, not after its transaction.timeout.ms (60 s).
    started = time.monotonic()
    owner = await transactional(broker, tid)
    try:
        took = time.monotonic() - started
        assert took < 10, f"InitProducerId took {took:.1f} s"
        await settled(broker, topic, 12)  # the abort marker at 11
        state, lso = await read_to_end(broker, topic, "read_committed")
        everything, high_watermark = await read_to_end(broker, topic, "read_uncommitted")
        assert lso == high_watermark == 12, "abort marker at 11; no transaction open"
        assert state == [*(f"state-{i}".encode() for i in range(5)), b"other-committed"]
        assert [v for v in everything if v.startswith(b"open-")] == [b"open-0", b"open-1", b"open-2"]
        async with owner.transaction():  # and the new owner writes on
            await owner.send(topic, b"state-5")
    finally:
        await owner.stop()
    state, _ = await read_to_end(broker, topic, "read_committed")
    assert state[-1] == b"state-5" and not any(v.startswith(b"open-") for v in state)


# A static group member that prints its assignment and generation whenever either changes, and
# stops cleanly (AIOKafkaConsumer.stop()) on SIGTERM.
MEMBER = """
import asyncio, json, signal, sys
from aiokafka import AIOKafkaConsumer

async def main(broker, topic, group, instance, session_ms):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, group_id=group, group_instance_id=instance,
                                session_timeout_ms=int(session_ms), heartbeat_interval_ms=500,
                                enable_auto_commit=False)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await consumer.start()
    last = None
    while not stop.is_set():
        await consumer.getmany(timeout_ms=100)
        now = (sorted(tp.partition for tp in consumer.assignment()), consumer._coordinator.generation)
        if now != last:
            print(json.dumps({"partitions": now[0], "generation": now[1]}), flush=True)
            last = now
    await consumer.stop()
    print(json.dumps({"stopped": True}), flush=True)

asyncio.run(main(*sys.argv[1:6]))
"""


class Member:
    """A static member in a subprocess; `state` is the last assignment it printed."""

    def __init__(self, broker: str, topic: str, group: str, instance: str, session_ms: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MEMBER, broker, topic, group, instance, str(session_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.states: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.states.append(json.loads(line))

    @property
    def state(self) -> dict[str, Any] | None:
        return self.states[-1] if self.states else None

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> float:
        """Seconds until the member's assignment satisfies `predicate`; fails after `timeout`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            state = self.state
            if state is not None and predicate(state):
                return time.monotonic() - started
            if self.proc.poll() is not None:
                raise AssertionError(f"member exited with {self.proc.returncode}")
            time.sleep(0.05)
        raise AssertionError(f"after {timeout} s the member has {self.state}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def two_static_members(broker: str, session_ms: int) -> tuple[str, str, dict[str, Member]]:
    topic = asyncio.run(create_topic(broker, partitions=4, prefix="static"))
    group = unique("static-group")
    members = {"a": Member(broker, topic, group, "a", session_ms)}
    members["a"].wait_for(lambda s: len(s["partitions"]) == 4, 30)
    members["b"] = Member(broker, topic, group, "b", session_ms)
    for member in members.values():
        member.wait_for(lambda s: len(s["partitions"]) == 2, 30)
    return topic, group, members


def test_a_restarted_static_member_gets_its_partitions_back_at_once(kafka_broker) -> None:
    broker = kafka_broker.bootstrap
    session_ms = 45_000
    topic, group, members = two_static_members(broker, session_ms)
    try:
        generation = members["a"].state["generation"]  # type: ignore[index]
        for victim, survivor in (("b", "a"), ("a", "b")):  # a follower, then the leader (the first member)
            before = members[victim].state["partitions"]  # type: ignore[index]
            kept = members[survivor].state
            members[victim].kill()
            members[victim] = Member(broker, topic, group, victim, session_ms)
            took = members[victim].wait_for(lambda s: bool(s["partitions"]), 15)
            assert took < 10, f"{victim} restarted: partitions back after {took:.1f} s"  # session: 45 s
            assert members[victim].state == {"partitions": before, "generation": generation}, "no rebalance"
            time.sleep(1)
            assert members[survivor].state == kept, "the survivor kept its partitions and generation"
    finally:
        for member in members.values():
            member.kill()


def test_a_static_member_that_stays_away_holds_its_partitions_until_its_session_expires(kafka_broker) -> None:
    broker = kafka_broker.bootstrap
    session_ms = 6_000  # the broker's group.min.session.timeout.ms
    _, _, members = two_static_members(broker, session_ms)
    try:
        started = time.monotonic()
        members["b"].proc.terminate()  # a clean stop(), but aiokafka sends no LeaveGroup for static members
        assert members["b"].proc.wait(15) == 0 and members["b"].state == {"stopped": True}
        time.sleep(3)
        assert len(members["a"].state["partitions"]) == 2, "b's partitions are nobody's until its session expires"  # type: ignore[index]
        members["a"].wait_for(lambda s: len(s["partitions"]) == 4, 20)
        took = time.monotonic() - started
        assert session_ms / 1000 - 1 < took < session_ms / 1000 + 10, f"a took over b's partitions after {took:.1f} s"
    finally:
        for member in members.values():
            member.kill()
