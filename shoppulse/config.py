"""Where settings come from: defaults, a TOML file, the environment, flags; and their checks.

Where a value comes from, lowest precedence first: the defaults below, a TOML config
file (`--config`), `SHOPPULSE_*` environment variables, command-line flags.
`load_settings` applies them in that order and validates the result; a TOML file mirrors
the dataclasses (top-level keys, then `[security]`, `[topics]`, `[goals]`,
`[sla_first_reply_seconds]`). docs/configuration.md is the reference.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path

from .errors import SettingsError
from .settings import COMPRESSION_TYPES, Settings, bootstrap_servers
from .streams.events import Priority
from .streams.goals import goals
from .streams.kpis import BY_KEY, CATALOGUE

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PRIORITIES = typing.get_args(Priority)
ENV_PREFIX = "SHOPPULSE_"
NOT_SETTINGS = {"SHOPPULSE_CACHE"}  # SHOPPULSE_* variables that are not settings (the jar cache)
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's legal topic names


def load_settings(
    config_path: str | Path | None = None,
    flag_overrides: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults < TOML file < SHOPPULSE_* environment (default: os.environ) < flags.

    `flag_overrides` maps dotted keys ("grace_seconds", "topics.orders") to typed values;
    leave out flags that were not given. Raises SettingsError listing every problem.
    """
    loader = _Loader()
    if config_path is not None:
        loader.apply_file(Path(config_path))
    loader.apply_env(os.environ if environ is None else environ)
    for key, value in (flag_overrides or {}).items():
        loader.apply(_nest(key, value), "command line", parse_text=False)
    loader.validate()
    if loader.problems:
        raise SettingsError(*loader.problems)
    # One form for every client built from the settings: HOST:PORT,HOST:PORT.
    loader.settings.broker = ",".join(bootstrap_servers(loader.settings.broker))
    return loader.settings


def check_config(config_path: str | Path) -> tuple[Settings, list[str]]:
    """`shoppulse config check`: the file over the defaults, and every problem found."""
    loader = _Loader()
    loader.apply_file(Path(config_path))
    loader.validate()
    return loader.settings, loader.problems


def apply_overrides(settings: Settings, overrides: Mapping[str, object], origin: str) -> Settings:
    """Set dotted keys ("topics.orders", "grace_seconds") with type checks; strings are parsed."""
    loader = _Loader(settings)
    for key, value in overrides.items():
        loader.apply(_nest(key, value), origin, parse_text=True)
    if loader.problems:
        raise SettingsError(*loader.problems)
    return settings


def env_overrides(environ: Mapping[str, str]) -> dict[str, object]:
    """SHOPPULSE_TOPICS__ORDERS=x -> {"topics.orders": "x"} (double underscore = nesting)."""
    return {
        key[len(ENV_PREFIX) :].lower().replace("__", "."): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and key not in NOT_SETTINGS
    }


def env_name(dotted: str) -> str:
    """ "topics.orders" -> "SHOPPULSE_TOPICS__ORDERS"."""
    return ENV_PREFIX + dotted.upper().replace(".", "__")


def setting_keys(cls: type = Settings, prefix: str = "") -> list[tuple[str, object]]:
    """Every leaf setting as (dotted key, type), nested dataclasses flattened, in field order."""
    keys: list[tuple[str, object]] = []
    for name, tp in typing.get_type_hints(cls).items():
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            keys.extend(setting_keys(tp, f"{prefix}{name}."))
        else:
            keys.append((f"{prefix}{name}", tp))
    return keys


# ------------------------------------------------------------------ loading


# Settings that existed once, with what replaced them: a config that still sets one is told why.
REMOVED_SETTINGS = {
    "data_plane": "no longer a choice: the batch data plane (docs/design.md) is the only one",
    "batch_within_seconds": "no longer used: the data plane processes each fetch as it comes",
}


class _Mismatch(Exception):
    """A value of the wrong type; the caller words the message."""


class _Loader:
    """Applies layers of values onto one Settings, collecting problems instead of stopping at the first."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.problems: list[str] = []
        self.origins: dict[str, tuple[str, str]] = {}  # dotted key -> (origin, how that origin names it)

    def apply_file(self, path: Path) -> None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"{path}: no such config file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{path}: cannot read the config file ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path}: not valid TOML: {exc}") from None
        self.apply(data, str(path), parse_text=False)

    def apply_env(self, environ: Mapping[str, str]) -> None:
        for key, value in env_overrides(environ).items():
            self.apply(_nest(key, value), "environment", parse_text=True, name=env_name)

    def apply(self, data: Mapping, origin: str, *, parse_text: bool, name=lambda key: f"`{key}`") -> None:
        """`parse_text`: strings are parsed into the field's type (environment); otherwise types must match (TOML)."""
        self._table(self.settings, data, "", origin, parse_text, name)

    def _table(self, target, data: Mapping, prefix: str, origin: str, parse_text: bool, name) -> None:
        hints = typing.get_type_hints(type(target))
        for field_name, raw in data.items():
            key = prefix + field_name
            if key in REMOVED_SETTINGS:
                self.problems.append(f"{origin}: {name(key)}: {REMOVED_SETTINGS[key]}; remove it")
                continue
            if field_name not in hints:
                self.problems.append(f"{origin}: {name(key)}: {_unknown_key(key, hints, name)}")
                continue
            tp = hints[field_name]
            try:
                if dataclasses.is_dataclass(tp):
                    if not isinstance(raw, Mapping):
                        raise _Mismatch
                    self._table(getattr(target, field_name), raw, key + ".", origin, parse_text, name)
                elif typing.get_origin(tp) is dict:
                    if not isinstance(raw, Mapping):
                        raise _Mismatch
                    self._entries(
                        getattr(target, field_name), typing.get_args(tp)[1], raw, key, origin, parse_text, name
                    )
                else:
                    setattr(target, field_name, _convert(raw, tp, parse_text))
                    self.origins[key] = (origin, name(key))
            except _Mismatch:
                self.problems.append(f"{origin}: {name(key)}: expected {_expected(tp)}, got {_got(raw, parse_text)}")

    def _entries(self, target: dict, value_type, data: Mapping, key: str, origin: str, parse_text: bool, name) -> None:
        """A table of free keys (SLA priorities, goal KPIs) merged into the current one; validate() checks the keys."""
        for entry, raw in data.items():
            entry_key = f"{key}.{entry}"
            try:
                target[entry] = _convert(raw, value_type, parse_text)
                self.origins[entry_key] = (origin, name(entry_key))
            except _Mismatch:
                self.problems.append(
                    f"{origin}: {name(entry_key)}: expected {_expected(value_type)}, got {_got(raw, parse_text)}"
                )

    def validate(self) -> None:
        for key, message in validate(self.settings):
            origin = self.origins.get(key)
            where = f"{origin[0]}: {origin[1]}" if origin else f"`{key}`"
            self.problems.append(f"{where}: {message}")


def _nest(dotted: str, value: object) -> dict:
    """("topics.orders", x) -> {"topics": {"orders": x}}: one override as a TOML-like table."""
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value  # type: ignore[return-value]


def _convert(raw: object, tp, parse_text: bool) -> object:
    """A TOML value (or, with parse_text, an environment string) as the field's type; raises _Mismatch."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:  # tuple[int, ...]: a TOML array, or "60,300,3600"
        items = raw.split(",") if parse_text and isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)) or not items:
            raise _Mismatch
        return tuple(_convert(item.strip() if isinstance(item, str) else item, args[0], parse_text) for item in items)
    if origin is dict:
        if not isinstance(raw, Mapping):
            raise _Mismatch
        return {str(k): _convert(v, args[1], parse_text) for k, v in raw.items()}
    if tp is str or type(None) in args:  # str, or str | None (TOML has no null: leave the key out)
        if not isinstance(raw, str):
            raise _Mismatch
        optional_and_empty = type(None) in args and not raw  # SHOPPULSE_SECURITY__SSL_CAFILE= unsets it
        return None if optional_and_empty else raw
    if parse_text and isinstance(raw, str):
        try:
            return tp(raw.strip())
        except ValueError:
            raise _Mismatch from None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (tp is int and not isinstance(raw, int)):
        raise _Mismatch
    return tp(raw)


_KINDS = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings")}


def _expected(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return "a table"
    if origin is tuple:
        return f"a non-empty array of {_KINDS[args[0]][1]}"
    if origin is dict:
        return "a table of " + ("tables" if typing.get_origin(args[1]) is dict else _KINDS[args[1]][1])
    if type(None) in args:
        return "a string"
    return _KINDS[tp][0]


def _got(raw: object, parse_text: bool) -> str:
    shown = json.dumps(raw, default=str)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if parse_text and isinstance(raw, str):
        return shown
    kinds = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return f"{kinds.get(type(raw), 'a ' + type(raw).__name__)} ({shown})"


def _unknown_key(key: str, hints: Mapping[str, object], name) -> str:
    """ "unknown key (did you mean `x`?)", or where the key belongs when it is in the wrong table."""
    table, _, field_name = key.rpartition(".")
    close = difflib.get_close_matches(field_name, list(hints), n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {name(f'{table}.{close[0]}' if table else close[0])}?)"
    elsewhere = [dotted for dotted, _ in setting_keys() if dotted.rpartition(".")[2] == field_name]
    if elsewhere:
        return f"unknown key here; the setting is {name(elsewhere[0])}"
    return "unknown key (docs/configuration.md lists every setting)"


# ------------------------------------------------------------------ validation


def validate(settings: Settings) -> list[tuple[str, str]]:
    """Every semantic problem as (dotted key, message): allowed values, ranges, files, goals."""
    problems: list[tuple[str, str]] = []
    bad = lambda key, message: problems.append((key, message))  # noqa: E731

    sec = settings.security
    if sec.security_protocol not in SECURITY_PROTOCOLS:
        bad(
            "security.security_protocol",
            f"{sec.security_protocol!r} is not allowed; choose one of {', '.join(SECURITY_PROTOCOLS)}",
        )
    if sec.sasl_mechanism is not None and sec.sasl_mechanism not in SASL_MECHANISMS:
        bad(
            "security.sasl_mechanism",
            f"{sec.sasl_mechanism!r} is not allowed; choose one of {', '.join(SASL_MECHANISMS)}",
        )
    if sec.security_protocol.startswith("SASL_"):
        for name in ("sasl_username", "sasl_password"):
            if not getattr(sec, name):
                bad(f"security.{name}", f"required when security_protocol is {sec.security_protocol}")
    elif sec.security_protocol in SECURITY_PROTOCOLS and (sec.sasl_mechanism or sec.sasl_username or sec.sasl_password):
        bad(
            "security.security_protocol",
            f"is {sec.security_protocol}, so the SASL settings are not used; set it to SASL_PLAINTEXT or SASL_SSL",
        )
    if sec.ssl_cafile is not None and not Path(sec.ssl_cafile).is_file():
        bad("security.ssl_cafile", f"no such file: {sec.ssl_cafile}")

    for address in bootstrap_servers(settings.broker):
        host, _, port = address.rpartition(":")
        if not host or "/" in host or not port.isdigit() or not 0 < int(port) <= 65535:
            bad("broker", f"{address!r} is not HOST:PORT or kafka://HOST:PORT (several: separate them with commas)")
            break

    names = {"app_id": settings.app_id, **{f"topics.{k}": v for k, v in dataclasses.asdict(settings.topics).items()}}
    for key, value in names.items():
        if not TOPIC_NAME.fullmatch(value):
            bad(key, f"{value!r} is not a Kafka topic name (letters, digits, `.`, `_`, `-`; at most 249)")
    seen: dict[str, str] = {}
    for key, value in names.items():
        if key != "app_id" and value in seen:
            bad(key, f"same topic as {seen[value]} ({value!r}); every topic needs its own name")
        seen.setdefault(value, key)

    for key, minimum in (
        ("partitions", 1),
        ("replication_factor", 1),
        ("label_cap", 1),
        ("top_list_size", 1),
        ("batch_max_events", 1),
        ("checkpoint_max_events", 1),
        ("open_updates_per_window", 1),
        ("max_payload_bytes", 1),
        ("grace_seconds", 0),
        ("dedup_horizon_seconds", 0),
    ):
        value = getattr(settings, key)
        if value < minimum:
            bad(key, f"must be at least {minimum}, got {value}")
    for key in (
        "idle_timeout_seconds",
        "session_timeout_seconds",
        "max_future_seconds",
        "backlog_age_seconds",
        "update_interval_seconds",
        "checkpoint_interval_seconds",
        "catch_up_checkpoint_interval_seconds",
        "group_session_timeout_seconds",
    ):
        if getattr(settings, key) <= 0:
            bad(key, f"must be positive, got {getattr(settings, key)}")
    if settings.compression_type not in COMPRESSION_TYPES:
        bad(
            "compression_type",
            f"{settings.compression_type!r} is not allowed; choose one of {', '.join(COMPRESSION_TYPES)}",
        )
    if settings.group_instance_id and not TOPIC_NAME.fullmatch(settings.group_instance_id):
        bad("group_instance_id", f"{settings.group_instance_id!r}: use letters, digits, `.`, `_`, `-`")
    if not 0 <= settings.metrics_port <= 65535:
        bad("metrics_port", f"must be a port number from 0 to 65535, got {settings.metrics_port}")
    if not settings.metrics_host:
        bad("metrics_host", "must be an address to bind, e.g. 0.0.0.0 or 127.0.0.1")

    problems.extend(_window_problems(settings.windows_seconds))
    for priority, seconds in settings.sla_first_reply_seconds.items():
        key = f"sla_first_reply_seconds.{priority}"
        if priority not in PRIORITIES:
            close = difflib.get_close_matches(priority, PRIORITIES, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            bad(key, f"unknown priority{hint}; the priorities are {', '.join(PRIORITIES)}")
        elif seconds <= 0:
            bad(key, f"must be positive, got {seconds}")
    problems.extend(_goal_problems(settings))
    return problems


def _window_problems(sizes: tuple[int, ...]) -> list[tuple[str, str]]:
    key = "windows_seconds"
    if any(size <= 0 for size in sizes):
        return [(key, f"window sizes must be positive, got {list(sizes)}")]
    if len(set(sizes)) != len(sizes):
        return [(key, f"a window size is listed twice: {list(sizes)}")]
    ordered = sorted(sizes)
    for i, size in enumerate(ordered):
        for smaller in ordered[:i]:
            if size % smaller:
                return [
                    (
                        key,
                        f"{size} is not a multiple of {smaller}: each window size must be a multiple of the "
                        "smaller ones (e.g. 60, 300, 3600)",
                    )
                ]
    return []


def _goal_problems(settings: Settings) -> list[tuple[str, str]]:
    """Each goal checked on its own by goals(), so that every bad one is reported."""

    problems = []
    for kpi, goal in settings.goals.items():
        try:
            goals(dataclasses.replace(settings, goals={kpi: goal}))
        except SettingsError as exc:
            message = str(exc).partition(": ")[2]
            close = difflib.get_close_matches(kpi, [k.key for k in CATALOGUE if not k.insight], n=1)
            if kpi not in BY_KEY and close:
                message = message.replace(";", f" (did you mean `{close[0]}`?);", 1)
            problems.append((f"goals.{kpi}", message))
    return problems
