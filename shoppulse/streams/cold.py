"""Cold state: the large, rarely read parts of an engine's state, kept in a key-value store.

- `EventIds`: the dedup horizon, every event id accepted within `dedup_horizon_seconds`;
- `SeenKeys`: the visitors and customers ever seen (first sight).

Both are exact. They sit on a `ColdStore`: `MemoryStore` (a dict, the default of the core and
the tests), or the worker's RocksDB (agents/coldstore.py), which keeps memory flat however many
ids, visitors and customers there are. The store is a cache of the changelog, not a source of
truth: an engine starts by dropping its spaces and refills them from its restored state.

Every event looks its id up, and nearly every id is new, so `EventIds` keeps a Bloom filter
(rbloom) per generation of ids in memory, about 1.8 bytes per id: a store read is needed only
when a filter answers "maybe" (a duplicate, or one false positive in 1,000 new ids). A false
positive costs one store read, never a wrong answer (`false_positives` counts them).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Protocol

from rbloom import Bloom

FALSE_POSITIVE_RATE = 0.001
FIRST_GENERATION_IDS = 1 << 16  # a generation's capacity doubles up to the largest
LARGEST_GENERATION_IDS = 1 << 20  # 1.8 MB of filter at 0.1 %


class ColdStore(Protocol):
    """Byte keys in named spaces. A space's name never contains NUL."""

    def get(self, space: str, key: bytes) -> bytes | None: ...

    def put_many(self, space: str, items: Iterable[tuple[bytes, bytes]]) -> None: ...

    def drop(self, space: str) -> None:
        """Forget every key of one space."""

    def drop_under(self, prefix: str) -> None:
        """Forget every key of every space whose name starts with `prefix`."""


class MemoryStore:
    """A `ColdStore` in Python dicts."""

    def __init__(self) -> None:
        self.spaces: dict[str, dict[bytes, bytes]] = {}

    def get(self, space: str, key: bytes) -> bytes | None:
        keys = self.spaces.get(space)
        return keys.get(key) if keys is not None else None

    def put_many(self, space: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        self.spaces.setdefault(space, {}).update(items)

    def drop(self, space: str) -> None:
        self.spaces.pop(space, None)

    def drop_under(self, prefix: str) -> None:
        for space in [s for s in self.spaces if s.startswith(prefix)]:
            del self.spaces[space]


class SeenKeys:
    """A set of strings that only grows (visitors or customers seen), in one store space."""

    def __init__(self, store: ColdStore, space: str):
        self.store = store
        self.space = space
        self.size = 0
        store.drop(space)

    def __contains__(self, key: str) -> bool:
        return self.store.get(self.space, key.encode()) is not None

    def add(self, key: str) -> None:
        """Add a key not in the set."""
        self.store.put_many(self.space, ((key.encode(), b"1"),))
        self.size += 1

    def add_many(self, keys: list[str]) -> None:
        """Add keys not in the set, in one store write (a restore's)."""
        self.store.put_many(self.space, ((key.encode(), b"1") for key in keys))
        self.size += len(keys)

    def __len__(self) -> int:
        return self.size


class _Generation:
    """Ids of consecutive groups, in one store space (id -> group) behind one Bloom filter."""

    __slots__ = ("bloom", "capacity", "live_groups", "size", "space")

    def __init__(self, space: str, capacity: int):
        self.space = space
        self.bloom = Bloom(capacity, FALSE_POSITIVE_RATE)
        self.capacity = capacity
        self.size = 0
        self.live_groups = 0


class EventIds:
    """The dedup horizon of one partition: event ids in groups (one batch each, with the batch's
    largest `ts`); a group is forgotten once the watermark is a horizon past its largest `ts`.

    Within a batch: `__contains__`, then `add` for each accepted id; then `end_group`.
    """

    def __init__(self, store: ColdStore, prefix: str):
        self.store = store
        self.prefix = prefix  # of this partition's generation spaces
        store.drop_under(prefix)
        self.groups: dict[int, tuple[int, int]] = {}  # live group -> (largest ts, generation)
        self.by_max_ts: list[tuple[int, int]] = []  # heap of (largest ts, group): the expiry order
        self.generations: dict[int, _Generation] = {}  # oldest first
        self.next_generation = 0
        self.batch: list[str] = []  # ids of the group being filled
        self.batch_set: set[str] = set()
        self.unsaved: dict[int, list[str]] = {}  # ids of new groups, until the changelog has them
        self.false_positives = 0

    def __contains__(self, event_id: str) -> bool:
        if event_id in self.batch_set:
            return True
        key = None
        for generation in reversed(self.generations.values()):
            if event_id in generation.bloom:
                key = key or event_id.encode()
                group = self.store.get(generation.space, key)
                if group is not None and int(group) in self.groups:
                    return True
                self.false_positives += group is None
        return False

    def take_false_positives(self) -> int:
        """False positives of the filters since the last call."""
        n, self.false_positives = self.false_positives, 0
        return n

    def add(self, event_id: str) -> None:
        self.batch.append(event_id)
        self.batch_set.add(event_id)

    def end_group(self, group: int, max_ts: int) -> None:
        """The ids added since the last call are the group `group`, with largest ts `max_ts`."""
        ids, self.batch, self.batch_set = self.batch, [], set()
        self._store(group, max_ts, ids)
        self.unsaved[group] = ids

    def restore_group(self, group: int, max_ts: int, ids: list[str]) -> None:
        self._store(group, max_ts, ids)

    def _store(self, group: int, max_ts: int, ids: list[str]) -> None:
        generation = self._generation_for(len(ids))
        generation.bloom.update(ids)
        generation.size += len(ids)
        generation.live_groups += 1
        value = b"%d" % group
        self.store.put_many(generation.space, ((event_id.encode(), value) for event_id in ids))
        self.groups[group] = (max_ts, self.next_generation - 1)
        heapq.heappush(self.by_max_ts, (max_ts, group))

    def _generation_for(self, n: int) -> _Generation:
        current = self.generations.get(self.next_generation - 1)
        if current is not None and current.size + n <= current.capacity:
            return current
        capacity = FIRST_GENERATION_IDS
        if current is not None:
            capacity = min(LARGEST_GENERATION_IDS, 2 * current.capacity)
            if current.live_groups == 0:  # every group of it expired while it was filling
                self.store.drop(current.space)
                del self.generations[self.next_generation - 1]
        capacity = max(capacity, n)
        generation = _Generation(f"{self.prefix}{self.next_generation}", capacity)
        self.generations[self.next_generation] = generation
        self.next_generation += 1
        return generation

    def take_unsaved(self, group: int) -> tuple[int, list[str]] | None:
        """(largest ts, ids) of a group added since the changelog last had it; None if expired."""
        ids = self.unsaved.pop(group, None)
        live = self.groups.get(group)
        if live is None:
            return None
        assert ids is not None, f"group {group} was written to the changelog already"
        return live[0], ids

    def expire(self, cutoff: int) -> list[int]:
        """Forget the groups whose largest ts is before `cutoff`; returns them, oldest first."""
        expired = []
        by_max_ts = self.by_max_ts
        while by_max_ts and by_max_ts[0][0] < cutoff:
            _, group = heapq.heappop(by_max_ts)
            _, number = self.groups.pop(group)
            expired.append(group)
            self.unsaved.pop(group, None)
            generation = self.generations[number]
            generation.live_groups -= 1
            if generation.live_groups == 0 and number != self.next_generation - 1:
                self.store.drop(generation.space)
                del self.generations[number]
        return expired

    def __len__(self) -> int:
        """Ids held (those of expired groups in a generation not yet dropped included)."""
        return sum(g.size for g in self.generations.values()) + len(self.batch)
