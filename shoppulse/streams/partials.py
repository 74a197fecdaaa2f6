"""Partials: the messages from the partition engines to the merge stage, and their codec.

- `Snapshot`: the full current `Measures` of one window on one partition (idempotent: a
  later snapshot replaces an earlier one);
- `Progress`: every window of a family ending at or before `through_ms` is final on this
  partition, with the partition's point-in-time state steps over (from_ms, through_ms].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from .measures import Measures


@dataclass(slots=True)
class Snapshot:
    family: str
    size_ms: int
    start_ms: int
    partition: int
    measures: Measures
    # The record it was decoded from, if any: the merge stage keeps it as its state as it
    # came, instead of encoding the measures again (docs/performance.md, "Merger capacity").
    encoded: bytes | None = field(default=None, repr=False, compare=False)

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "type": "snapshot",
                "family": self.family,
                "size_ms": self.size_ms,
                "start_ms": self.start_ms,
                "partition": self.partition,
                "measures": self.measures.dump(),
            }
        )


@dataclass(slots=True)
class Progress:
    family: str
    partition: int
    through_ms: int
    from_ms: int = 0  # the previous `through_ms`: `steps` cover (from_ms, through_ms]
    # Point-in-time state (support: open tickets...) as steps [t, open, backlog, oldest
    # unanswered created-at or None], each valid from window end t until the next step, so the
    # merge stage can take it at the end of any window, with or without events on this partition.
    steps: list | None = None
    # For the stream clock (streams/clock.py): whether the partition is idle, and its watermark.
    idle: bool = False
    watermark_ms: int | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "type": "progress",
                "family": self.family,
                "partition": self.partition,
                "through_ms": self.through_ms,
                "from_ms": self.from_ms,
                "steps": self.steps,
                "idle": self.idle,
                "watermark_ms": self.watermark_ms,
            }
        )


def decode_partial(data: bytes) -> Snapshot | Progress:
    record = orjson.loads(data)
    if record["type"] == "progress":
        return Progress(
            record["family"],
            record["partition"],
            record["through_ms"],
            record.get("from_ms", 0),
            record.get("steps"),
            record.get("idle", False),
            record.get("watermark_ms"),
        )
    return snapshot_of(record, data)


def snapshot_of(record: dict, data: bytes) -> Snapshot:
    """The snapshot of a decoded partial record, `data` being its encoded form."""
    return Snapshot(
        record["family"],
        record["size_ms"],
        record["start_ms"],
        record["partition"],
        Measures.load(record["measures"]),
        data,
    )
