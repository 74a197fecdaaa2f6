"""All settings in one typed object. Defaults live here and nowhere else.

Plain data, no I/O: the core reads it, `shoppulse.config` loads and validates it.
"""

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
    """Passed through to every Kafka client (aiokafka)."""

    security_protocol: str = "PLAINTEXT"  # one of SECURITY_PROTOCOLS
    sasl_mechanism: str | None = None  # one of SASL_MECHANISMS; PLAIN when unset
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
    open_updates_per_window: int = 60  # non-final updates of an open window per window length, at most
    data_dir: str = "var/worker"
    goals: dict[str, dict[str, float]] = field(default_factory=dict)

    # Throughput
    batch_max_events: int = 2000  # records per fetch; a partition with this many unread is catching up

    # Data plane (docs/design.md, "Data plane")
    checkpoint_interval_seconds: float = 1.0
    checkpoint_max_events: int = 50_000  # per input partition
    catch_up_checkpoint_interval_seconds: float = 5.0  # while a partition is a batch or more behind
    group_instance_id: str = ""  # static group membership; "" = one kept in data_dir
    group_session_timeout_seconds: float = 10.0
    compression_type: str = "zstd"  # of the worker's own records (state, partials, results); one of COMPRESSION_TYPES


COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")  # Kafka's codecs; aiokafka's need cramjam


def window_label(seconds: int) -> str:
    """60 -> "1m", 3600 -> "1h": the `window` label and kpi-results field."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


KAFKA_SCHEME = "kafka://"


def bootstrap_servers(broker: str) -> list[str]:
    """The `broker` setting as aiokafka's bootstrap list: comma-separated HOST:PORT entries, each
    also accepted in Faust's own form, kafka://HOST:PORT."""
    servers = []
    for entry in broker.split(","):
        entry = entry.strip()
        if entry[: len(KAFKA_SCHEME)].lower() == KAFKA_SCHEME:
            entry = entry[len(KAFKA_SCHEME) :]
        servers.append(entry)
    return servers
