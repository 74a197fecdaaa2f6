"""The kpi-results publisher: window results as kpi-results records, for the merge stage to send."""

from __future__ import annotations

import time

from ..streams.merge import WindowResult


class ResultsPublisher:
    """Collects kpi-results records; the merge stage (agents/checkpoint.py `MergeTask`) sends them
    in its checkpoint's transaction."""

    def __init__(self) -> None:
        self.pending: list[tuple[bytes, bytes]] = []

    def on_results(self, results: list[WindowResult]) -> None:
        now = int(time.time() * 1000)
        for result in results:
            self.pending.extend(result.records(now))

    def take(self) -> list[tuple[bytes, bytes]]:
        out, self.pending = self.pending, []
        return out

    def on_merge_revoked(self) -> None:
        """Nothing to drop: `pending` is emptied by every send."""
