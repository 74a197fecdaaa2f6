"""When a partition of the batch data plane checkpoints (agents/task.py `PartitionTask.due`), and
which state changes a task may make (`TaskState`, as Kafka Streams' `Task.State`)."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from shoppulse.agents.task import IllegalTransition, PartitionTask, TaskContext, TaskState
from shoppulse.outputs.base import Sensor
from shoppulse.settings import Settings


class CountingTask(PartitionTask[int]):
    """A task without state: what it was fed is counted."""

    def new_tally(self) -> int:
        return 0


def task(**settings) -> CountingTask:
    t = CountingTask(TopicPartition("orders", 0), TaskContext(Settings(**settings), "group", Sensor()))
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


def test_a_task_runs_only_once_restored_and_a_suspended_one_is_restored_again():
    t = task()
    assert t.state is TaskState.CREATED and not t.opened
    with pytest.raises(IllegalTransition, match="created -> running"):
        t.transition(TaskState.RUNNING)
    t.transition(TaskState.RESTORING)
    t.restore({}, 42)
    assert t.state is TaskState.RUNNING and t.opened and t.position == t.committed == 42
    t.pending.fed = 7
    t.suspend()  # a failed checkpoint: what was fed since the last one is dropped
    assert t.state is TaskState.SUSPENDED and not t.opened and t.pending.fed == 0
    with pytest.raises(IllegalTransition, match="suspended -> running"):
        t.transition(TaskState.RUNNING)
    t.transition(TaskState.RESTORING)
    t.restore({}, 42)
    assert t.opened


def test_a_closed_task_stays_closed():
    t = task()
    t.transition(TaskState.CLOSED)
    for state in TaskState:
        with pytest.raises(IllegalTransition):
            t.transition(state)
