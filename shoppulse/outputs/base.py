"""The monitoring seam, in the manner of faust's `sensors/base.py`: the worker's tasks tell a
`Sensor` what their checkpoints made durable, and nothing else reaches the outputs from the data
path. Each `on_*_committed` call comes after the transaction that holds it has committed, so a
checkpoint that fails, and whose records are fed again from the last committed one, counts
nothing twice."""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..streams.merge import WindowResult
from ..streams.pipeline import OUTCOMES, FeedResult


@dataclass
class SourceTally:
    """What the records of one source checkpoint did, summed over its batches."""

    outcomes: Counter[str] = field(default_factory=Counter)  # OUTCOMES -> records
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    first_responses: list[tuple[float, str, str]] = field(default_factory=list)  # (seconds, channel, priority)
    resolutions: list[float] = field(default_factory=list)  # seconds
    latencies: array = field(default_factory=lambda: array("d"))  # record timestamp to fed, seconds
    filter_false_positives: int = 0
    watermarks: int = 0  # watermark records (not events)

    def add(self, result: FeedResult, latencies: Iterable[float]) -> None:
        for outcome, n in zip(OUTCOMES, (result.accepted, result.invalid, result.late, result.duplicates)):
            self.outcomes[outcome] += n
        self.dead_letter_reasons.update(letter.reason for letter in result.dead_letters)
        self.first_responses.extend(result.first_response_seconds)
        self.resolutions.extend(result.resolution_seconds)
        self.latencies.extend(latencies)
        self.filter_false_positives += result.filter_false_positives
        self.watermarks += result.watermarks


class Sensor:
    """What the worker reports; every method does nothing unless overridden."""

    def on_source_committed(self, topic: str, tally: SourceTally) -> None:
        """A source partition's checkpoint committed, with what its records did."""

    def on_results_committed(self, results: list[WindowResult]) -> None:
        """The merge stage's checkpoint committed, with the window results it holds."""

    def on_merge_revoked(self) -> None:
        """Another worker merges now (and so exports the KPIs)."""

    def on_lag(self, topic: str, watermark_lag_seconds: float | None, consumer_lag: int) -> None:
        """Once a second: how far a source topic's partitions here are behind."""

    def on_restored(self, full: bool, records: int) -> None:
        """A changelog partition was brought up to date for a task: `full`, from its start; else
        from the local copy's offset. `records`: changelog records read."""
