"""The Kafka broker jars, fetched once with Maven behind a progress spinner on stderr.

Used by `shoppulse kafka`, `shoppulse demo` and scripts/setup.sh.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..kafka.broker import ensure_jars, jars_dir


def fetch_jars_with_progress(console: Console | None = None) -> Path:
    """The jars directory; on the first run, Maven's downloads are counted on a spinner."""
    if (jars_dir() / ".complete").exists():
        return jars_dir()
    console = console or Console(stderr=True, soft_wrap=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("Fetching Kafka jars with Maven (first run only)", total=None)

        def on_progress(done: int, line: str) -> None:
            bar.update(task, description=f"Fetching Kafka jars with Maven: {done} files")

        path = ensure_jars(on_progress)
    console.print(f"Kafka jars cached in {path}")
    return path
