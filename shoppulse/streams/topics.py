"""Topic creation and the Kafka client options shared by every client we start."""

from __future__ import annotations

import asyncio
import ssl

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from .settings import KafkaSecurity, Settings

SOURCE_STREAMS = ("clickstream", "orders", "tickets")
MERGE_TABLE = "merge-state"


def state_table(stream: str) -> str:
    """The changelogged Faust table of one source stream's partition engines."""
    return f"{stream}-state"


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"  # Faust's naming


class BrokerUnreachable(RuntimeError):
    """Expected failure: the broker cannot be reached. The message says what to try."""


class PartitionMismatch(RuntimeError):
    """A topic exists with another partition count than shoppulse is configured for."""


def client_options(security: KafkaSecurity) -> dict:
    """aiokafka keyword arguments for the configured security settings."""
    options: dict = {"security_protocol": security.security_protocol}
    if security.security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=security.sasl_mechanism or "PLAIN",
            sasl_plain_username=security.sasl_username,
            sasl_plain_password=security.sasl_password,
        )
    if security.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=security.ssl_cafile)
    return options


def unreachable_message(broker: str) -> str:
    return (
        f"Cannot reach the Kafka broker at {broker}. Is it running? "
        "Start a local one with `shoppulse kafka` (or pass --broker HOST:PORT), "
        "and check the security settings if the broker needs SASL or SSL."
    )


def topic_specs(settings: Settings) -> dict[str, int]:
    """Every topic shoppulse reads or writes, with its partition count."""
    topics = settings.topics
    specs = {topics.source(s): settings.partitions for s in SOURCE_STREAMS}
    specs[topics.results] = settings.partitions
    specs[topics.dead_letters] = settings.partitions
    specs[f"{settings.app_id}-partials"] = 1  # one merger; see streams/app.py
    # Changelogs too: created by Faust at start-up, they can be missing from its first
    # metadata fetch, which crashes the worker with PartitionsMismatch (seen here).
    for stream in SOURCE_STREAMS:
        specs[changelog_topic(settings, state_table(stream))] = settings.partitions
    specs[changelog_topic(settings, MERGE_TABLE)] = 1
    return specs


async def ensure_topics(settings: Settings, timeout: float = 20.0) -> None:
    """Create missing topics; fail clearly when an existing one has another partition count."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.broker, request_timeout_ms=int(timeout * 1000), **client_options(settings.security)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except (KafkaConnectionError, asyncio.TimeoutError, OSError):
        await admin.close()
        raise BrokerUnreachable(unreachable_message(settings.broker)) from None
    try:
        specs = topic_specs(settings)
        existing = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(list(specs)) if t["error_code"] == 0}
        missing = [
            NewTopic(name, count, settings.replication_factor,
                     topic_configs={"cleanup.policy": "compact"} if name.endswith("-changelog") else {})
            for name, count in specs.items() if name not in existing
        ]  # fmt: skip
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
        wrong = {n: c for n, c in existing.items() if c != specs[n]}
        if wrong:
            detail = ", ".join(f"{n} has {c} (expected {specs[n]})" for n, c in wrong.items())
            raise PartitionMismatch(
                f"Topic partition counts differ from the configured `partitions` ({settings.partitions}): {detail}. "
                "Set `partitions` to match, or recreate the topics."
            )
    except KafkaError as exc:
        raise BrokerUnreachable(f"{unreachable_message(settings.broker)} ({exc})") from None
    finally:
        await admin.close()
