"""All settings in one typed object. Defaults live here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TopicNames:
    clickstream: str = "clickstream"
    orders: str = "orders"
    tickets: str = "tickets"
    results: str = "kpi-results"
    dead_letters: str = "kpi-dead-letters"

    def source(self, stream: str) -> str:
        return getattr(self, stream)


@dataclass
class KafkaSecurity:
    """Passed through to the Kafka client (aiokafka under Faust)."""

    security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None


@dataclass
class Settings:
    broker: str = "127.0.0.1:9092"
    app_id: str = "shoppulse"
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    topics: TopicNames = field(default_factory=TopicNames)
    partitions: int = 4
    replication_factor: int = 1

    # Event time
    windows_seconds: tuple[int, ...] = (60, 300, 3600)
    grace_seconds: float = 30.0
    idle_timeout_seconds: float = 30.0
    session_timeout_seconds: float = 1800.0
    dedup_horizon_seconds: float = 3600.0

    # Input limits
    max_payload_bytes: int = 256 * 1024
    max_future_seconds: float = 86_400.0

    # Support
    backlog_age_seconds: float = 86_400.0
    sla_first_reply_seconds: dict[str, float] = field(
        default_factory=lambda: {"urgent": 3600.0, "high": 4 * 3600.0, "normal": 24 * 3600.0, "low": 48 * 3600.0}
    )

    # Output
    label_cap: int = 8  # top-N label values kept per dimension; the rest become "other"
    top_list_size: int = 20
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9464
    update_interval_seconds: float = 1.0
    data_dir: str = "var/worker"
    goals: dict[str, dict[str, float]] = field(default_factory=dict)

    # Throughput
    batch_max_events: int = 2000
    batch_within_seconds: float = 0.2


def window_label(seconds: int) -> str:
    """60 -> "1m", 3600 -> "1h": the `window` label and kpi-results field."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


class SettingsError(ValueError):
    """A bad setting: names the key, the expected type and, where known, the allowed values."""


def apply_overrides(settings: Settings, overrides: dict[str, object], origin: str) -> Settings:
    """Set dotted keys ("topics.orders", "grace_seconds") with type checks."""
    for dotted, raw in overrides.items():
        target: object = settings
        *path, name = dotted.split(".")
        for part in path:
            if not hasattr(target, part):
                raise SettingsError(f"{origin}: unknown setting `{dotted}`")
            target = getattr(target, part)
        if not hasattr(target, name) or name.startswith("_"):
            raise SettingsError(f"{origin}: unknown setting `{dotted}`")
        current = getattr(target, name)
        setattr(target, name, _coerce(dotted, raw, current, origin))
    return settings


def _coerce(key: str, raw: object, current: object, origin: str) -> object:
    expected = type(current)
    try:
        if isinstance(current, bool):
            if isinstance(raw, str):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return raw.lower() in ("true", "1", "yes")
            if not isinstance(raw, bool):
                raise ValueError
            return raw
        if isinstance(current, tuple):
            items = raw.split(",") if isinstance(raw, str) else raw
            return tuple(int(x) for x in items)  # type: ignore[union-attr]
        if isinstance(current, dict):
            if not isinstance(raw, dict):
                raise ValueError
            return raw
        if current is None or isinstance(current, str):
            if not isinstance(raw, str):
                raise ValueError
            return raw
        if isinstance(raw, bool):
            raise ValueError
        return expected(raw)  # int or float, from a number or a numeric string
    except (TypeError, ValueError):
        kind = "a number" if expected in (int, float) else expected.__name__
        raise SettingsError(f"{origin}: `{key}` must be {kind}, got {raw!r}") from None


ENV_PREFIX = "SHOPPULSE_"


def env_overrides(environ: dict[str, str]) -> dict[str, object]:
    """SHOPPULSE_TOPICS__ORDERS=x -> {"topics.orders": "x"} (double underscore = nesting)."""
    return {
        key[len(ENV_PREFIX) :].lower().replace("__", "."): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and key != "SHOPPULSE_CACHE"
    }
