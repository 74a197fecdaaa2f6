"""The merge stage: partition snapshots in, exact window results out. Pure: no Faust, no I/O.

Every source partition sends the latest `Snapshot` of each window it has data for, and
`Progress` marks. A window of a family is final once every partition's progress has
passed its end; its result is the merge of the partitions' last snapshots. Windows no
partition had data for are emitted too (as zeros), so an outage reads as zero rather
than as the last good value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from ..settings import Settings
from .kpis import BY_KEY, CATALOGUE, CROSS_NEEDS, Context, Value, compute_family
from .measures import Measures
from .partials import Progress, Snapshot, snapshot_of
from .state_keys import EmittedKey, FinalKey, MergeKey, PartialKey, ProgressKey, StepsKey, decode_merge_key, encode_key

# Windows no partition had data for are emitted as zeros, but at most this many per size when
# progress jumps (the end of a historical replay must not emit years of empty minutes).
MAX_BACKFILL_WINDOWS = 60


@dataclass
class WindowResult:
    family: str
    size_ms: int
    start_ms: int
    final: bool
    values: list[Value]
    measures: Measures | None = None  # the merged measures (counters are fed from these)
    computed: tuple[str, ...] | None = None  # the KPIs it covers, when not its whole family

    def kpis(self) -> tuple[str, ...]:
        """Every KPI this result holds the current window's values of (some may have none)."""
        if self.computed is not None:
            return self.computed
        return tuple(kpi.key for kpi in CATALOGUE if kpi.family == self.family)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.size_ms


class Merger:
    def __init__(self, settings: Settings):
        self.partitions = settings.partitions
        self.sizes = tuple(s * 1000 for s in sorted(settings.windows_seconds))
        self.context = Context(label_cap=settings.label_cap, top_n=settings.top_list_size)
        self.progress: dict[tuple[str, int], int] = {}  # (family, partition) -> through
        self.emitted: dict[str, int] = {}  # family -> global progress already emitted
        self.pending: dict[tuple[str, int, int], dict[int, Snapshot]] = {}  # window -> partition -> snapshot
        self.finals: dict[tuple[str, int, int], Measures] = {}  # final merged measures kept for cross KPIs
        self.dirty: set[tuple[str, int, int]] = set()
        self.steps: dict[tuple[str, int], list] = {}  # (family, partition) -> point-in-time state steps
        self.changed: set[MergeKey] = set()

    # ------------------------------------------------------------- input

    def apply(self, message: Snapshot | Progress) -> list[WindowResult]:
        if isinstance(message, Snapshot):
            key = (message.family, message.size_ms, message.start_ms)
            if message.start_ms + message.size_ms <= self.emitted.get(message.family, -1):
                return []  # a re-sent snapshot of a window already final (after a restart)
            self.pending.setdefault(key, {})[message.partition] = message
            self.dirty.add(key)
            # One state key per window and partition: a 1 h window of all partitions together
            # outgrew Kafka's 1 MiB record limit in the benchmark.
            self.changed.add(PartialKey(*key, message.partition))
            return []
        self.progress[(message.family, message.partition)] = max(
            message.through_ms, self.progress.get((message.family, message.partition), 0)
        )
        self.changed.add(ProgressKey(message.family, message.partition))
        if message.steps is not None:
            # Idempotent: a re-sent interval replaces what was known after its start.
            steps_of = (message.family, message.partition)
            kept = [step for step in self.steps.get(steps_of, []) if step[0] <= message.from_ms]
            self.steps[steps_of] = kept + message.steps
            self.changed.add(StepsKey(message.family, message.partition))
        return self._finalise(message.family)

    def _finalise(self, family: str) -> list[WindowResult]:
        marks = [self.progress[(family, p)] for p in range(self.partitions) if (family, p) in self.progress]
        if len(marks) < self.partitions:
            return []  # not every partition has reported yet
        through = min(marks)
        if through <= 0:
            return []  # a partition that has seen nothing reports progress 0 with its idle flag
        previous = self.emitted.get(family)
        if previous is not None and through <= previous:
            return []
        ready = {k for k in self.pending if k[0] == family and k[1] + k[2] <= through}
        for size in self.sizes:
            last_end = through - through % size
            first_end = last_end if previous is None else previous - previous % size + size
            first_end = max(first_end, last_end - (MAX_BACKFILL_WINDOWS - 1) * size)
            ready.update((family, size, end - size) for end in range(first_end, last_end + 1, size))
        results = []
        for key in sorted(ready, key=lambda k: (k[2] + k[1], k[1])):
            merged = Measures()
            for partition, snapshot in self.pending.pop(key, {}).items():
                merged.merge(snapshot.measures)
                self.changed.add(PartialKey(*key, partition))
            self.dirty.discard(key)
            results.append(self._result(key, merged, final=True))
            results.extend(self._cross(key, merged))
        self.emitted[family] = through
        self.changed.add(EmittedKey(family))
        self._prune_finals(through)
        self._prune_steps(family, through)
        return results

    def _prune_steps(self, family: str, through: int) -> None:
        """Windows ending at or before `through` are final: keep only the step in force there."""
        for partition in range(self.partitions):
            steps = self.steps.get((family, partition))
            if not steps:
                continue
            index = next((i for i in range(len(steps) - 1, -1, -1) if steps[i][0] <= through), None)
            if index:
                del steps[:index]
                self.changed.add(StepsKey(family, partition))

    def _state_at(self, family: str, end: int) -> tuple[int, int, int | None] | None:
        """Open tickets, backlog and the oldest unanswered creation time at `end`, summed over partitions."""
        partitions = [self.steps.get((family, p)) for p in range(self.partitions)]
        if not any(partitions):
            return None
        open_count = backlog = 0
        oldest = None
        for steps in partitions:
            step = next((s for s in reversed(steps or []) if s[0] <= end), None)
            if step is None:
                continue
            open_count += step[1]
            backlog += step[2]
            if step[3] is not None and (oldest is None or step[3] < oldest):
                oldest = step[3]
        return open_count, backlog, oldest

    def _result(self, key: tuple[str, int, int], merged: Measures, *, final: bool) -> WindowResult:
        family, size, start = key
        state = self._state_at(family, start + size)
        if state is not None:
            open_count, backlog, oldest = state
            merged["open_tickets"] = open_count
            merged["backlog_tickets"] = backlog
            if oldest is not None:
                merged["max:oldest_unanswered_age_ms"] = start + size - oldest
        insights = size == self.sizes[-1]
        values = compute_family(family, merged, self.context, insights=insights)
        return WindowResult(family, size, start, final, values, merged)

    def _cross(self, key: tuple[str, int, int], merged: Measures) -> list[WindowResult]:
        """Cross-family KPIs, once both families of the window are final."""
        family, size, start = key
        if family not in ("sales", *CROSS_NEEDS.values()):
            return []
        self.finals[key] = merged
        self.changed.add(FinalKey(*key))
        sales = self.finals.get(("sales", size, start))
        values = []
        computed = []
        for kpi_key, partner in CROSS_NEEDS.items():
            other = self.finals.get((partner, size, start))
            if sales is None or other is None or family not in ("sales", partner):
                continue
            if BY_KEY[kpi_key].insight and size != self.sizes[-1]:
                continue
            computed.append(kpi_key)
            values.extend(
                BY_KEY[kpi_key].compute(sales, Context(self.context.label_cap, self.context.top_n, {partner: other}))
            )
        # Sent even with no values (no orders): the exporter then drops the previous window's
        # series of exactly these KPIs instead of showing them as current.
        return [WindowResult("cross", size, start, True, values, computed=tuple(computed))] if computed else []

    def _prune_finals(self, through: int) -> None:
        """Drop kept finals once every partner family has also passed that window."""
        partners = {"sales": tuple(CROSS_NEEDS.values())}
        for partner in CROSS_NEEDS.values():
            partners.setdefault(partner, ("sales",))
        for key in list(self.finals):
            family, size, start = key
            if all(self.emitted.get(p, -1) >= start + size for p in partners[family]):
                del self.finals[key]
                self.changed.add(FinalKey(*key))

    def open_updates(self) -> list[WindowResult]:
        """Non-final results of windows changed since the last call (call at most once a second)."""
        results = []
        for key in sorted(self.dirty):
            merged = Measures()
            for snapshot in self.pending.get(key, {}).values():
                merged.merge(snapshot.measures)
            results.append(self._result(key, merged, final=False))
        self.dirty.clear()
        return results

    # ------------------------------------------------------------ persistence

    def take_changes(self) -> dict[str, bytes | None]:
        changes = {encode_key(key): self._dump(key) for key in self.changed}
        self.changed.clear()
        return changes

    def _dump(self, key: MergeKey) -> bytes | None:
        value: object = None
        match key:
            case ProgressKey(family, partition):
                value = self.progress.get((family, partition))
            case EmittedKey(family):
                value = self.emitted.get(family)
            case PartialKey(family, size_ms, start_ms, partition):
                # The snapshot's partial record, as received: its measures are not encoded again.
                snapshot = self.pending.get((family, size_ms, start_ms), {}).get(partition)
                if snapshot is None:
                    return None
                return snapshot.encoded if snapshot.encoded is not None else snapshot.to_bytes()
            case FinalKey(family, size_ms, start_ms):
                merged = self.finals.get((family, size_ms, start_ms))
                value = None if merged is None else merged.dump()
            case StepsKey(family, partition):
                value = self.steps.get((family, partition))
        return None if value is None else orjson.dumps(value)

    def restore(self, items: Iterable[tuple[str, bytes]]) -> None:
        for text, raw in items:
            data = orjson.loads(raw)
            match decode_merge_key(text):
                case ProgressKey(family, partition):
                    self.progress[(family, partition)] = data
                case EmittedKey(family):
                    self.emitted[family] = data
                case PartialKey(family, size_ms, start_ms, partition):
                    # The partial record as received; state written before that held its measures alone.
                    snapshot = (
                        snapshot_of(data, raw)
                        if "type" in data
                        else Snapshot(family, size_ms, start_ms, partition, Measures.load(data))
                    )
                    self.pending.setdefault((family, size_ms, start_ms), {})[partition] = snapshot
                case FinalKey(family, size_ms, start_ms):
                    self.finals[(family, size_ms, start_ms)] = Measures.load(data)
                case StepsKey(family, partition):
                    self.steps[(family, partition)] = data
