"""What a peer tells the benchmark while it runs: how many input records it has processed.

The peer writes one small JSON file, replaced atomically (`os.replace`) at most every
`interval` seconds and once more at exit: `{"count": N, "first": unix time of the first record
or null, ...}` plus any other counters the peer keeps in `extra`. bench/peers/measure.py polls it, as bench/throughput.py polls the worker's /metrics.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


class Progress:
    def __init__(self, path: str | Path, interval: float = 0.2) -> None:
        self.path = Path(path)
        self.interval = interval
        self.count = 0
        self.first: float | None = None
        self.extra: dict[str, int] = {}  # other counters the peer reports, e.g. late records
        self._written_at = 0.0

    def add(self, n: int = 1) -> None:
        if self.first is None:
            self.first = time.time()
        self.count += n

    def maybe_write(self) -> None:
        now = time.monotonic()
        if now - self._written_at >= self.interval:
            self.write()

    def write(self) -> None:
        self._written_at = time.monotonic()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"count": self.count, "first": self.first, **self.extra}))
        os.replace(tmp, self.path)


def read(path: str | Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
