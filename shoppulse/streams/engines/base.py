"""The partition engine base: what every source stream's engine shares.

One `PartitionEngine` owns one partition of one source topic. It keeps:
- the partition's watermark;
- the dedup horizon (event ids seen recently);
- the open windows' `Measures`, per family and window size, each as a base and a delta (below);
- entity state: open sessions, first-seen visitors and customers, tickets.

It emits two kinds of messages for the merge stage (see merge.py):
- `Snapshot`: the full current `Measures` of one window on this partition (idempotent:
  a later snapshot replaces an earlier one);
- `Progress`: "every window of this family that ends at or before `through_ms` is final
  on this partition".

State is kept as Python objects and written back in bulk: `take_changes()` returns the
keys changed since the last call (state_keys.py), serialised with msgspec, and the worker's
source task (agents/) writes them to the partition's changelog in its next checkpoint's
transaction: each changed key once per checkpoint, not once per event.

A window's state is its base merged with its delta. The delta takes the events; it is folded
into the base when the window's open snapshot goes out (`open_updates_per_window` times per
window length: a 1 h window once a minute). Between folds a write holds the delta only, so
a 1 h window's whole state (its visitors' sketch grows all hour) is written once a minute,
not at every checkpoint. Measures merge exactly (measures.py), so base + delta is the same
state as one bag fed every event.

No clock is read here: every call that depends on the time is given it (`wall_ms`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ...settings import Settings
from ..cold import ColdStore, EventIds, MemoryStore
from ..events import Parsed, WatermarkRecord
from ..measures import Measures
from ..partials import Progress, Snapshot
from ..state_keys import META, IdsKey, MetaKey, StateKey, WindowDeltaKey, WindowKey, decode_key, encode_key
from ..windows import Watermark, window_start

NEVER = 1 << 62

encode_state = msgspec.json.Encoder().encode  # every state value, the engines' records included


class EngineMeta(msgspec.Struct):
    """The `meta` row: the watermark's event time, each family's progress, the next dedup group."""

    wm: int
    progress: dict[str, int]
    next_group: int


_decode_meta = msgspec.json.Decoder(EngineMeta).decode
_decode_ids = msgspec.json.Decoder(tuple[int, list[str]]).decode  # (max ts, event ids) of one group
_decode_measures = msgspec.json.Decoder(dict[str, Any]).decode


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    watermarks: int = 0  # watermark records (events.py `WatermarkRecord`)
    late: list[tuple[Parsed, int]] = field(default_factory=list)  # (event, index in the batch)
    first_response_seconds: list[tuple[float, str, str]] = field(default_factory=list)  # (seconds, channel, priority)
    resolution_seconds: list[float] = field(default_factory=list)


class PartitionEngine:
    """Shared mechanics: watermark, dedup, windows, snapshots and progress."""

    stream = ""
    families: tuple[str, ...] = ()

    def __init__(self, partition: int, settings: Settings, cold: ColdStore | None = None):
        self.partition = partition
        # Spaces `<stream>/<partition>/...` of the process's cold store (streams/cold.py).
        self.cold = cold if cold is not None else MemoryStore()
        self.cold_prefix = f"{self.stream}/{partition}/"
        self.settings = settings
        self.sizes = tuple(s * 1000 for s in sorted(settings.windows_seconds))
        self.smallest = self.sizes[0]
        self.grace_ms = int(settings.grace_seconds * 1000)
        self.watermark = Watermark(int(settings.idle_timeout_seconds * 1000))
        self.horizon_ms = int(settings.dedup_horizon_seconds * 1000)
        # Each open window's delta (what it received since its last fold); every open window has one.
        self.windows: dict[tuple[str, int, int], Measures] = {}
        self.window_bases: dict[tuple[str, int, int], Measures] = {}  # folded deltas (row `w|`)
        self.bases_unsaved: set[tuple[str, int, int]] = set()  # bases folded into since their row was written
        self.deltas_saved: set[tuple[str, int, int]] = set()  # windows with a delta row (`wd|`) written
        self.dirty_windows: set[tuple[str, int, int]] = set()  # changed since the last snapshot
        # Open windows' snapshots of each size at most `open_updates_per_window` times per window
        # length (1 h: once a minute): a large window's snapshot is the largest partial.
        self.open_period_ms = {size: size // settings.open_updates_per_window for size in self.sizes}
        self.open_due_ms: dict[int, int] = {}  # size -> wall ms from which its next snapshots may go
        self.progress: dict[str, int] = {f: 0 for f in self.families}
        self.sent_progress: dict[str, int] = {}
        # dedup: the ids of each batch are one group, so expiry writes one key per batch
        self.event_ids = EventIds(self.cold, self.cold_prefix + "ids/")
        self.next_group = 0
        self.changed: set[StateKey] = set()  # state keys to write back
        self.outbox: list[Snapshot | Progress] = []
        self.next_close = NEVER  # see _next_close: each event is checked against it
        self.reported_idle: bool | None = None  # the idle flag the merge stage last heard of
        self.finals_waiting = False  # the outbox holds progress past a window end (finals)

    # ------------------------------------------------------------ processing

    def process(self, batch: list[Parsed], wall_ms: int) -> BatchResult:
        """Apply one batch of parsed events in arrival order, received at `wall_ms`."""
        result = BatchResult()
        event_ids = self.event_ids
        group_max = 0
        wm = self.watermark
        for index, parsed in enumerate(batch):
            if isinstance(parsed.event, WatermarkRecord):
                # A promise about the past only: event time never passes the wall clock by one,
                # so a replay's end cannot make the live events that follow it late.
                wm.observe(min(parsed.ts_ms, wall_ms), wall_ms)
                result.watermarks += 1
                if wm.value - self.grace_ms >= self.next_close:
                    self._close()
                continue
            event_id = parsed.event.event_id
            if event_id in event_ids:
                result.duplicates += 1
                continue
            event_ids.add(event_id)
            group_max = max(group_max, parsed.ts_ms)
            if window_start(parsed.ts_ms, self.smallest) + self.smallest + self.grace_ms <= wm.value:
                result.late.append((parsed, index))
                continue
            wm.observe(parsed.ts_ms, wall_ms)
            self.on_event(parsed, result)
            result.accepted += 1
            if wm.value - self.grace_ms >= self.next_close:
                self._close()
        if batch:
            wm.arrived(wall_ms)
        if event_ids.batch:
            event_ids.end_group(self.next_group, group_max)
            self.changed.add(IdsKey(self.next_group))
            self.next_group += 1
        self.changed.add(META)
        self._close()
        return result

    def tick(self, wall_ms: int, behind: bool = False, clock_ms: int | None = None) -> None:
        """Called every second: is the partition idle (`behind`: records of it wait unread), and if
        so, adopt its stream's clock (`clock_ms`, from the merge stage: streams/clock.py)."""
        if self.watermark.check_idle(wall_ms, behind) and clock_ms is not None:
            self.watermark.adopt(clock_ms)
        self._close()

    def take_outbox(self, open_at_ms: int | None = None) -> list[Snapshot | Progress]:
        """Messages for the merge stage. With `open_at_ms` (the wall clock), include snapshots of
        the open windows changed since their last one, of each size whose period has passed
        (the non-final updates: see `open_period_ms`)."""
        if open_at_ms is not None:
            due = {size for size in self.sizes if open_at_ms >= self.open_due_ms.get(size, 0)}
            for key in [k for k in self.dirty_windows if k[1] in due]:
                if key in self.windows:
                    self.outbox.append(Snapshot(*key, self.partition, self._fold(key)))
                self.dirty_windows.discard(key)
            for size in due:
                # A tenth of the period early is on time: the 1-s timer may fire a little early,
                # and missing it by a millisecond would halve the 1 m windows' updates.
                self.open_due_ms[size] = open_at_ms + self.open_period_ms[size] * 9 // 10
        out, self.outbox = self.outbox, []
        self.finals_waiting = False
        return out

    # ----------------------------------------------------------- windows

    def measures_for(self, family: str, ts_ms: int) -> list[Measures]:
        """The open windows of every size that contain `ts_ms` (smallest first), marked changed."""
        out = []
        for size in self.sizes:
            key = (family, size, ts_ms - ts_ms % size)
            measures = self.windows.get(key)
            if measures is None:
                measures = self.windows[key] = Measures()
                self.next_close = min(self.next_close, key[2] + size)
            self.dirty_windows.add(key)
            self.changed.add(WindowKey(*key))
            out.append(measures)
        return out

    def _fold(self, key: tuple[str, int, int]) -> Measures:
        """The window's whole state, its delta folded into its base (written at the next checkpoint)."""
        delta = self.windows[key]
        base = self.window_bases.get(key)
        if base is None:
            base = self.window_bases[key] = delta
        elif not delta:
            return base
        else:
            base.merge(delta)
        self.windows[key] = Measures()
        self.bases_unsaved.add(key)
        self.changed.add(WindowKey(*key))
        return base

    def _pop_window(self, key: tuple[str, int, int]) -> Measures:
        """A closing window's whole state, taken out (its rows are deleted at the next checkpoint)."""
        delta = self.windows.pop(key)
        base = self.window_bases.pop(key, None)
        self.bases_unsaved.discard(key)
        return delta if base is None else base.merge(delta)

    def family_progress(self, family: str) -> int:
        """Windows of `family` ending at or before this are final on this partition."""
        return self.watermark.value - self.grace_ms

    def _close(self) -> None:
        for family in self.families:
            through = self.family_progress(family)
            if through <= self.progress.get(family, 0):
                continue
            previous = self.progress.get(family, 0)
            steps = self.state_steps(family, previous, through)
            for key in [k for k in self.windows if k[0] == family and k[2] + k[1] <= through]:
                self.outbox.append(Snapshot(*key, self.partition, self._pop_window(key)))
                self.dirty_windows.discard(key)
                self.changed.add(WindowKey(*key))
            self.progress[family] = through
            self.finals_waiting = self.finals_waiting or any(through // s > previous // s for s in self.sizes)
            self.changed.add(META)  # the progress promised must survive a restart (see restore)
            self.outbox.append(self._progress(family, through, previous, steps))
            self.reported_idle = self.watermark.idle
        if self.reported_idle is not self.watermark.idle:
            # The merge stage's stream clock needs every change of the idle flag, moved or not.
            family = self.families[0]
            previous = self.progress.get(family, 0)
            self.outbox.append(self._progress(family, previous, previous, None))
            self.reported_idle = self.watermark.idle
        self.next_close = self._next_close()
        self._expire_ids()

    def _next_close(self) -> int:
        # The oldest window end the watermark has not passed yet. A window it has passed but that
        # is still open (a `sessions` window held by its open sessions) is left to the closes at
        # the end of each batch and tick: checking it on every event would close on every event.
        passed = self.watermark.value - self.grace_ms
        return min((end for _, size, start in self.windows if (end := start + size) > passed), default=NEVER)

    def _progress(self, family: str, through: int, previous: int, steps: list | None) -> Progress:
        wm = self.watermark
        return Progress(family, self.partition, through, previous, steps, idle=wm.idle, watermark_ms=wm.value)

    def state_steps(self, family: str, previous: int, through: int) -> list | None:
        """Hook: point-in-time state over (previous, through] for the Progress message."""
        return None

    def _expire_ids(self) -> None:
        for group in self.event_ids.expire(self.watermark.value - self.horizon_ms):
            self.changed.add(IdsKey(group))

    # ----------------------------------------------------------- persistence

    def on_event(self, parsed: Parsed, result: BatchResult) -> None:
        raise NotImplementedError

    def take_changes(self) -> dict[str, bytes | None]:
        """Changed state keys since the last call, encoded, with their values (None = deleted)."""
        changes: dict[str, bytes | None] = {}
        for key in self.changed:
            if isinstance(key, WindowKey):
                self._window_rows(key, changes)
            else:
                changes[encode_key(key)] = self.dump_key(key)
        self.changed.clear()
        return changes

    def _window_rows(self, key: WindowKey, changes: dict[str, bytes | None]) -> None:
        """A window's rows: its base (`w|`) when folded into since it was written, its delta
        (`wd|`). A window never folded writes its delta as its base row (so a closed window's
        key opened again overwrites whatever row it had); a closed window deletes both."""
        window = (key.family, key.size_ms, key.start_ms)
        delta_row = encode_key(WindowDeltaKey(*window))
        delta = self.windows.get(window)
        base = self.window_bases.get(window)
        if delta is None:  # closed
            changes[encode_key(key)] = None
        elif base is None:
            changes[encode_key(key)] = encode_state(delta.dump())
            delta = None
        else:
            if window in self.bases_unsaved:
                changes[encode_key(key)] = encode_state(base.dump())
                self.bases_unsaved.discard(window)
            if not delta:
                delta = None
        if delta is not None:
            changes[delta_row] = encode_state(delta.dump())
            self.deltas_saved.add(window)
        elif window in self.deltas_saved:
            changes[delta_row] = None
            self.deltas_saved.discard(window)

    def dump_key(self, key: StateKey) -> bytes | None:
        match key:
            case MetaKey():
                return encode_state(EngineMeta(self.watermark.event_ms, self.progress, self.next_group))
            case IdsKey(group):
                ids = self.event_ids.take_unsaved(group)
                return encode_state(ids) if ids is not None else None
        return self.dump_entity(key)

    def dump_entity(self, key: StateKey) -> bytes | None:
        """Hook: the value of an entity key of this engine's stream (None: the entity is gone)."""
        raise KeyError(key)

    def restore(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Rebuild in-memory state from the partition's changelog rows (its last committed
        checkpoint) after a (re)start or rebalance."""
        # By the key's type: a `match` on a million rows costs seconds (its class patterns).
        restorers: dict[type, Callable[[Any, bytes], None]] = {
            MetaKey: self._restore_meta,
            WindowKey: self._restore_window,
            WindowDeltaKey: self._restore_delta,
            IdsKey: self._restore_ids,
        }
        entity = self.restore_entity
        for text, value in items:
            key = decode_key(text)
            restorers.get(type(key), entity)(key, value)
        self.entities_restored()
        self.next_close = self._next_close()
        # The watermark may have been an adopted clock, which is not persisted; the progress is,
        # and every progress sent was at most watermark - grace: anything older stays late.
        promised = max(self.progress.values(), default=0)
        if promised > 0:
            self.watermark.adopted_ms = max(self.watermark.adopted_ms, promised + self.grace_ms)

    def _restore_meta(self, key: MetaKey, value: bytes) -> None:
        meta = _decode_meta(value)
        self.watermark.event_ms = meta.wm
        self.progress.update(meta.progress)
        self.next_group = meta.next_group

    def _restore_window(self, key: WindowKey, value: bytes) -> None:
        window = (key.family, key.size_ms, key.start_ms)
        self.window_bases[window] = Measures.load(_decode_measures(value))
        self.windows.setdefault(window, Measures())

    def _restore_delta(self, key: WindowDeltaKey, value: bytes) -> None:
        window = (key.family, key.size_ms, key.start_ms)
        self.windows[window] = Measures.load(_decode_measures(value))
        self.deltas_saved.add(window)

    def _restore_ids(self, key: IdsKey, value: bytes) -> None:
        max_ts, ids = _decode_ids(value)
        self.event_ids.restore_group(key.group, max_ts, ids)

    def restore_entity(self, key: StateKey, value: bytes) -> None:
        """Hook: restore an entity row of this engine's stream."""
        raise KeyError(key)

    def entities_restored(self) -> None:
        """Hook: every row is restored (keys collected by `restore_entity` are stored now, in one write)."""
