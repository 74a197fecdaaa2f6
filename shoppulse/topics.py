"""Every topic and table name shoppulse derives from its settings, in one place."""

from __future__ import annotations

from .settings import Settings

MERGE_TABLE = "merge-state"


def state_table(stream: str) -> str:
    """The changelogged table of one source stream's partition engines."""
    return f"{stream}-state"


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"  # the naming of Faust's table changelogs, kept


def partials_topic(settings: Settings) -> str:
    """Snapshots and progress from the partition engines to the merge stage (1 partition)."""
    return f"{settings.app_id}-partials"


def clock_topic(settings: Settings) -> str:
    """The stream clocks, from the merge stage to every worker (1 partition, compacted): agents/clock.py."""
    return f"{settings.app_id}-clock"
