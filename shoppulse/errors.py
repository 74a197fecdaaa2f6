"""The error base. Expected failures (broker down, port taken, bad config, missing tools)
are `ShoppulseError`s: the CLI prints their message, which says what to do, and exits with
code 2, without a traceback. Anything else is a bug and keeps its traceback."""

from __future__ import annotations


class ShoppulseError(Exception):
    """An expected failure; its message tells the user what to do."""

    exit_code = 2


class UserError(ShoppulseError):
    """A mistake in how shoppulse was called (bad file, bad option)."""


class SettingsError(ShoppulseError, ValueError):
    """Bad settings: each problem names its key, what was expected and, where known, the allowed values."""

    def __init__(self, *problems: str):
        super().__init__("\n".join(problems))
        self.problems = list(problems)
