"""`shoppulse worker` with one what-if patch applied, for measurements only (never for production).

    python bench/worker_variant.py VARIANT worker [worker options...]

bench/throughput.py --worker-variant VARIANT runs the worker this way. The patches are applied
here, in the benchmark's process, so the project's code is unchanged. Variants:

- `stock`: no patch (the same as `python -m shoppulse.cli`).
- `quiet-logging`: Faust's `Worker._setup_spinner_handler` sets the root logger to DEBUG (for its
  terminal spinner), so every `log.debug` in aiokafka and Faust builds a LogRecord that the
  WARN-level handler then drops. This variant keeps the root logger at the worker's level.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def quiet_logging() -> None:
    import faust.worker

    def setup_without_spinner(self, logger, level) -> None:
        self.spinner = None  # the spinner is what needs the DEBUG root level

    faust.worker.Worker._setup_spinner_handler = setup_without_spinner


VARIANTS = {"stock": lambda: None, "quiet-logging": quiet_logging}


if __name__ == "__main__":
    variant = sys.argv[1]
    VARIANTS[variant]()
    from shoppulse.cli import main

    sys.exit(main(sys.argv[2:]))
