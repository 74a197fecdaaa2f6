"""`shoppulse worker` with one what-if patch applied, for measurements only (never for production).

    python bench/worker_variant.py VARIANT worker [worker options...]

bench/throughput.py --worker-variant VARIANT runs the worker this way. The patches are applied
here, in the benchmark's process, so the project's code is unchanged. Variants:

- `stock`: no patch (the same as `python -m shoppulse.cli`).
- `faust-spinner`: puts back Faust's terminal spinner, which `shoppulse/cli/worker.py` `run_worker`
  switches off (`faust_worker.spinner = None`) since 06cf0c3. With the spinner,
  `Worker._setup_spinner_handler` sets the root logger to DEBUG, so every `log.debug` in aiokafka
  and Faust builds a LogRecord that the WARN-level handler then drops: the behaviour before
  06cf0c3, to measure that fix against the current code in the same run.
- `batch-plane`: the batch data plane (`SHOPPULSE_DATA_PLANE=batch`): aiokafka batches and
  transactional checkpoints instead of Faust agents and tables (docs/design.md).
- `batch-plane-uncompressed`: the batch data plane with `compression_type = "none"`, the
  default before zstd, to measure what compression saves in bytes and costs in CPU.
- `batch-plane-1s-checkpoints`: the batch data plane checkpointing every second in a backlog
  too (`catch_up_checkpoint_interval_seconds = 1`), the behaviour before that setting.
- `batch-plane-memory-cold`: the batch data plane with the cold state (dedup ids, visitors and
  customers seen) in Python dicts (`streams/cold.py` `MemoryStore`) instead of the worker's
  RocksDB store, to measure what the store saves in memory and costs in time.
- `no-flush-writes`: acks each batch without waiting for its writes to be acknowledged by
  the broker (`agents/source.py` `flush_writes` made a no-op): the code before that fix, to
  measure what the wait costs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def faust_spinner() -> None:
    import faust.worker
    from faust.utils import terminal

    execute = faust.worker.Worker.execute_from_commandline

    def execute_with_spinner(self):
        if self.spinner is None:  # run_worker turned it off
            self.spinner = terminal.Spinner(file=self.stdout)
        return execute(self)

    faust.worker.Worker.execute_from_commandline = execute_with_spinner


def no_flush_writes() -> None:
    from shoppulse.agents import batcher

    async def no_wait(app) -> None:
        return None

    batcher.flush_writes = no_wait


def batch_plane() -> None:
    """The batch data plane (`data_plane = "batch"`, shoppulse/agents/dataplane.py)."""
    import os

    os.environ["SHOPPULSE_DATA_PLANE"] = "batch"


def batch_plane_uncompressed() -> None:
    import os

    batch_plane()
    os.environ["SHOPPULSE_COMPRESSION_TYPE"] = "none"


def batch_plane_1s_checkpoints() -> None:
    import os

    batch_plane()
    os.environ["SHOPPULSE_CATCH_UP_CHECKPOINT_INTERVAL_SECONDS"] = "1"


def batch_plane_memory_cold() -> None:
    from shoppulse.agents import dataplane
    from shoppulse.streams.cold import MemoryStore

    class ClosableMemoryStore(MemoryStore):
        def __init__(self, path: Path):
            super().__init__()

        def close(self) -> None:
            pass

    batch_plane()
    dataplane.RocksStore = ClosableMemoryStore  # type: ignore[misc,assignment]


VARIANTS = {
    "stock": lambda: None,
    "faust-spinner": faust_spinner,
    "no-flush-writes": no_flush_writes,
    "batch-plane": batch_plane,
    "batch-plane-uncompressed": batch_plane_uncompressed,
    "batch-plane-1s-checkpoints": batch_plane_1s_checkpoints,
    "batch-plane-memory-cold": batch_plane_memory_cold,
}


if __name__ == "__main__":
    variant = sys.argv[1]
    VARIANTS[variant]()
    from shoppulse.cli import main

    sys.exit(main(sys.argv[2:]))
