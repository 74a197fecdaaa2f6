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
- `uncompressed`: `compression_type = "none"`, the default before zstd, to measure what
  compression saves in bytes and costs in CPU.
- `1s-checkpoints`: checkpointing every second in a backlog too
  (`catch_up_checkpoint_interval_seconds = 1`), the behaviour before that setting.
- `memory-cold`: the cold state (dedup ids, visitors and customers seen) in Python dicts
  (`streams/cold.py` `MemoryStore`) instead of the worker's RocksDB store, to measure what the
  store saves in memory and costs in time.
- `no-local-copy`: checkpoints do not write their changelog rows to the local copy
  (`agents/localstate.py`), so every open restores in full, the behaviour before it: to
  measure what that write costs.

Until the Faust plane was retired (its source and merge agents, `data_plane = "faust"`), `stock`
was that plane and the batch plane's variants were named `batch-plane`, `batch-plane-uncompressed`
and so on: the results under bench/results/ from before then use those names.
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


def uncompressed() -> None:
    import os

    os.environ["SHOPPULSE_COMPRESSION_TYPE"] = "none"


def one_second_checkpoints() -> None:
    import os

    os.environ["SHOPPULSE_CATCH_UP_CHECKPOINT_INTERVAL_SECONDS"] = "1"


def memory_cold() -> None:
    from shoppulse.agents import dataplane
    from shoppulse.streams.cold import MemoryStore

    class ClosableMemoryStore(MemoryStore):
        def __init__(self, path: Path):
            super().__init__()

        def close(self) -> None:
            pass

    dataplane.RocksStore = ClosableMemoryStore  # type: ignore[misc,assignment]


def no_local_copy() -> None:
    from shoppulse.agents import dataplane, task

    def context_without_copy(settings, group_id, sensor, local=None) -> task.TaskContext:
        return task.TaskContext(settings, group_id, sensor, None)  # restores still fill the copy

    dataplane.TaskContext = context_without_copy  # type: ignore[misc,assignment]


VARIANTS = {
    "stock": lambda: None,
    "faust-spinner": faust_spinner,
    "uncompressed": uncompressed,
    "1s-checkpoints": one_second_checkpoints,
    "memory-cold": memory_cold,
    "no-local-copy": no_local_copy,
}


if __name__ == "__main__":
    variant = sys.argv[1]
    VARIANTS[variant]()
    from shoppulse.cli import main

    sys.exit(main(sys.argv[2:]))
