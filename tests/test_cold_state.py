"""Cold state (streams/cold.py) on both stores: the dict and the worker's RocksDB.

`EventIds` is checked against a reference model of the dedup horizon written out here (each
group's ids remembered until the cutoff passes the group's largest ts), over generated
sequences of batches and expiries, with small generations so that filters fill, roll over
and are dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoppulse.agents.coldstore import RocksStore
from shoppulse.errors import ShoppulseError
from shoppulse.streams import cold
from shoppulse.streams.cold import EventIds, MemoryStore, SeenKeys


@pytest.fixture(params=["memory", "rocksdb"])
def store_factory(request, tmp_path):
    opened: list[RocksStore] = []

    def make():
        if request.param == "memory":
            return MemoryStore()
        store = RocksStore(tmp_path / f"cold-{len(opened)}")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def small_generations(monkeypatch):
    monkeypatch.setattr(cold, "FIRST_GENERATION_IDS", 4)
    monkeypatch.setattr(cold, "LARGEST_GENERATION_IDS", 16)


batches = st.lists(
    st.tuples(
        st.lists(st.sampled_from([f"e{i}" for i in range(40)]), max_size=12),  # ids, repeats likely
        st.integers(0, 50),  # the batch's ts
        st.integers(0, 60),  # the expiry cutoff after it
    ),
    max_size=40,
)


@pytest.mark.usefixtures("small_generations")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=batches)
def test_event_ids_match_the_reference_horizon(store_factory, steps):
    ids = EventIds(store_factory(), "clickstream/0/ids/")
    reference: dict[int, tuple[int, set[str]]] = {}  # group -> (largest ts, ids)
    for group, (batch, ts, cutoff) in enumerate(steps):
        accepted = []
        for event_id in batch:
            seen = any(event_id in group_ids for _, group_ids in reference.values()) or event_id in accepted
            assert (event_id in ids) == seen, (group, event_id)
            if not seen:
                ids.add(event_id)
                accepted.append(event_id)
        if accepted:
            ids.end_group(group, ts)
            reference[group] = (ts, set(accepted))
            assert ids.take_unsaved(group) == (ts, accepted)
        expired = sorted(g for g, (max_ts, _) in reference.items() if max_ts < cutoff)
        assert sorted(ids.expire(cutoff)) == expired
        for g in expired:
            del reference[g]
    live = {event_id for _, group_ids in reference.values() for event_id in group_ids}
    assert {f"e{i}" for i in range(40) if f"e{i}" in ids} == live


@pytest.mark.usefixtures("small_generations")
def test_restored_ids_answer_as_before(store_factory):
    store = store_factory()
    original = EventIds(store, "orders/1/ids/")
    groups = {}
    for group in range(10):
        batch = [f"g{group}-{i}" for i in range(group + 1)]
        for event_id in batch:
            original.add(event_id)
        original.end_group(group, group * 10)
        groups[group] = original.take_unsaved(group)
    original.expire(35)  # groups 0..3 go
    copy = EventIds(store_factory(), "orders/1/ids/")
    for group, (max_ts, batch) in groups.items():
        if group in original.groups:
            copy.restore_group(group, max_ts, batch)
    for group, (_, batch) in groups.items():
        assert all((event_id in copy) == (group >= 4) for event_id in batch), group
    largest_ts = {group: max_ts for group, (max_ts, _) in original.groups.items()}
    assert {group: max_ts for group, (max_ts, _) in copy.groups.items()} == largest_ts


def test_generations_are_dropped_from_the_store_once_every_group_expired(small_generations, store_factory):
    store = store_factory()
    ids = EventIds(store, "tickets/0/ids/")
    for group in range(6):
        for i in range(8):
            ids.add(f"{group}-{i}")
        ids.end_group(group, group)
    assert len(ids.generations) > 2
    ids.expire(5)  # every group but the newest
    assert len(ids.generations) == 1
    assert "0-0" not in ids and "5-7" in ids
    assert store.get("tickets/0/ids/0", b"0-0") is None, "the oldest generation's space is gone"


def test_an_engine_starts_on_empty_spaces_of_its_own(store_factory):
    store = store_factory()
    first = SeenKeys(store, "clickstream/0/visitors")
    other = SeenKeys(store, "clickstream/1/visitors")
    first.add("v1")
    other.add("v2")
    assert "v1" in first and "v2" not in first and len(first) == 1
    again = SeenKeys(store, "clickstream/0/visitors")  # the partition comes back: restored afresh
    assert "v1" not in again and "v2" in other


def test_a_store_held_by_another_worker_is_an_error_that_says_what_to_do(tmp_path: Path):
    store = RocksStore(tmp_path / "cold-state")
    try:
        with pytest.raises(ShoppulseError, match="its own `data_dir`"):
            RocksStore(tmp_path / "cold-state")
        store.put_many("s", [(b"k", b"v")])
        assert store.get("s", b"k") == b"v", "the failed open left the store alone"
    finally:
        store.close()
