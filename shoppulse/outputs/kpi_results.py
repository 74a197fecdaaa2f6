"""The kpi-results topic: one JSON record per (KPI, window, dimensions), keyed
`"<kpi>|<window>"` (the contract: docs/kpis.md, "The kpi-results topic"). The merge stage
(agents/merge_task.py) adds these records to its checkpoint, so they commit in the same
transaction as the merge state and the partials offset they come from."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import orjson

from ..settings import window_label
from ..streams.merge import WindowResult

Output = tuple[str, bytes | None, bytes | None]  # (topic, key, value)


def records(topic: str, results: Iterable[WindowResult], emitted_at_ms: int) -> list[Output]:
    """(topic, key, value) output records of window results, as a checkpoint writes them."""
    emitted = _iso(emitted_at_ms)
    out: list[Output] = []
    for result in results:
        window = window_label(result.size_ms // 1000)
        start, end = _iso(result.start_ms), _iso(result.end_ms)
        for v in result.values:
            record = {
                "kpi": v.kpi,
                "window": window,
                "window_start": start,
                "window_end": end,
                "dimensions": v.dimensions,
                "value": v.value,
                "final": result.final,
                "emitted_at": emitted,
            }
            if v.denominator is not None:
                record["numerator"] = v.numerator
                record["denominator"] = v.denominator
            out.append((topic, f"{v.kpi}|{window}".encode(), orjson.dumps(record)))
    return out


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
