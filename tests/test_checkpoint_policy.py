"""When a partition of the batch data plane checkpoints (agents/checkpoint.py `PartitionTask.due`)."""

from __future__ import annotations

from aiokafka import TopicPartition

from shoppulse.agents.checkpoint import PartitionTask
from shoppulse.settings import Settings


def task(**settings) -> PartitionTask:
    t = PartitionTask(TopicPartition("orders", 0), Settings(**settings), "group")
    t.last_checkpoint = 100.0
    return t


def test_a_live_partition_checkpoints_every_interval():
    t = task(checkpoint_interval_seconds=1.0)
    assert not t.due(100.9, catching_up=False)
    assert t.due(101.0, catching_up=False)


def test_a_partition_catching_up_checkpoints_less_often():
    t = task(checkpoint_interval_seconds=1.0, catch_up_checkpoint_interval_seconds=5.0)
    assert not t.due(104.9, catching_up=True)
    assert t.due(105.0, catching_up=True)


def test_enough_events_make_a_checkpoint_due_at_once():
    t = task(checkpoint_max_events=10)
    t.pending.fed = 10
    assert t.due(100.0, catching_up=True) and t.due(100.0, catching_up=False)


def test_finals_make_a_live_partition_checkpoint_at_once_but_not_one_catching_up():
    t = task(checkpoint_interval_seconds=1.0, catch_up_checkpoint_interval_seconds=5.0)
    t.pending.finals = True
    assert t.due(100.0, catching_up=False)
    assert not t.due(100.0, catching_up=True), "in a backlog, windows end every few seconds"
