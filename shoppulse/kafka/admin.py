"""Topic creation, and the broker diagnosis behind every "cannot reach the broker" message."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from ..errors import ShoppulseError
from ..settings import Settings
from ..streams.events import STREAMS
from ..topics import MERGE_TABLE, changelog_topic, clock_topic, partials_topic, state_table
from .options import bootstrap_servers, client_options


class BrokerUnreachable(ShoppulseError):
    """Expected failure: the broker cannot be reached. The message says what to try."""


class PartitionMismatch(ShoppulseError):
    """A topic exists with another partition count than shoppulse is configured for."""


def unreachable_message(broker: str) -> str:
    return (
        f"Cannot reach the Kafka broker at {broker}. Is it running? "
        "Start a local one with `shoppulse kafka`, or point shoppulse at yours with --broker HOST:PORT "
        "(or SHOPPULSE_BROKER, or `broker` in the config file); "
        "check the [security] settings if the broker needs SASL or SSL."
    )


async def diagnose(settings: Settings, timeout: float = 10.0) -> BrokerUnreachable:
    """Why a client could not bootstrap: aiokafka only says "Unable to bootstrap", so connect
    to the first address ourselves and name the cause (wrong password, protocol, port...)."""
    sec = settings.security
    broker = settings.broker
    host, _, port = bootstrap_servers(broker)[0].rpartition(":")
    try:
        conn = await asyncio.wait_for(
            create_conn(host, int(port), request_timeout_ms=int(timeout * 1000), **client_options(sec)), timeout
        )
        try:
            # A PLAINTEXT client on a SASL or SSL listener connects, then the broker hangs up.
            await asyncio.wait_for(conn.send(MetadataRequest([])), timeout)
        finally:
            conn.close()
    except SaslAuthenticationFailed:
        return BrokerUnreachable(
            f"The Kafka broker at {broker} rejected the SASL credentials of user `{sec.sasl_username}` "
            f"({sec.sasl_mechanism or 'PLAIN'}). Check security.sasl_username and security.sasl_password "
            "in the config file (or SHOPPULSE_SECURITY__SASL_USERNAME / SHOPPULSE_SECURITY__SASL_PASSWORD)."
        )
    except UnsupportedSaslMechanismError:
        return BrokerUnreachable(
            f"The Kafka broker at {broker} does not accept the SASL mechanism {sec.sasl_mechanism or 'PLAIN'}. "
            "Set security.sasl_mechanism to one it enables (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)."
        )
    except ssl.SSLError as exc:
        return BrokerUnreachable(
            f"The SSL handshake with the Kafka broker at {broker} failed ({exc.reason or exc}). Check that the "
            "port is an SSL listener and that security.ssl_cafile holds the CA that signed the broker's certificate."
        )
    except (IllegalSaslStateError, KafkaConnectionError):
        return BrokerUnreachable(
            f"The Kafka broker at {broker} does not speak {sec.security_protocol} on that port. Check "
            "security.security_protocol and the port: a broker's PLAINTEXT, SSL and SASL listeners have different ports."
        )
    except (TimeoutError, OSError, KafkaError, ValueError):
        pass  # nothing listening, no answer, a bad address: the general message
    return BrokerUnreachable(unreachable_message(broker))


def topic_specs(settings: Settings) -> dict[str, int]:
    """Every topic shoppulse reads or writes, with its partition count."""
    topics = settings.topics
    specs = {topics.source(s): settings.partitions for s in STREAMS}
    specs[topics.results] = settings.partitions
    specs[topics.dead_letters] = settings.partitions
    specs[partials_topic(settings)] = 1  # one merger: agents/merge_task.py MergeTask
    specs[clock_topic(settings)] = 1  # its stream clocks, read by every worker: agents/clock.py
    # Changelogs too: compacted, co-partitioned with their inputs, before any task restores from one.
    for stream in STREAMS:
        specs[changelog_topic(settings, state_table(stream))] = settings.partitions
    specs[changelog_topic(settings, MERGE_TABLE)] = 1
    return specs


# How long compaction keeps tombstones (Kafka's default, set explicitly): a worker's local copy
# of a changelog younger than this is brought up to date from the changelog's tail
# (agents/localstate.py).
TOMBSTONE_RETENTION_MS = 86_400_000
COMPACTED = {"cleanup.policy": "compact", "delete.retention.ms": str(TOMBSTONE_RETENTION_MS)}


def _compacted(settings: Settings, topic: str) -> bool:
    """Topics where only the latest value per key matters: the changelogs and the clock topic."""
    return topic.endswith("-changelog") or topic == clock_topic(settings)


async def ensure_topics(settings: Settings, timeout: float = 20.0) -> None:
    """Create missing topics; fail clearly when an existing one has another partition count."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers(settings.broker),
        request_timeout_ms=int(timeout * 1000),
        **client_options(settings.security),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except (TimeoutError, KafkaConnectionError, OSError):
        await admin.close()
        raise await diagnose(settings) from None
    try:
        specs = topic_specs(settings)
        existing = {
            t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(list(specs)) if t["error_code"] == 0
        }
        missing = [
            NewTopic(
                name,
                count,
                settings.replication_factor,
                topic_configs=COMPACTED if _compacted(settings, name) else {},
            )
            for name, count in specs.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
                await admin.create_topics(missing)
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
