"""The seam between the merge stage and its outputs (like faust's `sensors/base.py`): the
merge stage (agents/checkpoint.py `MergeTask`) hands every batch of window results to each
`ResultListener`."""

from __future__ import annotations

from typing import Protocol

from ..streams.merge import WindowResult


class ResultListener(Protocol):
    def on_results(self, results: list[WindowResult]) -> None: ...

    def on_merge_revoked(self) -> None: ...
