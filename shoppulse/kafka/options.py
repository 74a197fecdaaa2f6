"""Settings to client options, in one place: aiokafka keyword arguments and Faust's."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from ..settings import KAFKA_SCHEME, KafkaSecurity, Settings, bootstrap_servers

if TYPE_CHECKING:
    import faust

__all__ = ["bootstrap_servers", "client_options", "compression", "faust_broker", "faust_credentials"]


def faust_broker(broker: str) -> list[str]:
    """The `broker` setting as Faust's broker URLs."""
    return [KAFKA_SCHEME + server for server in bootstrap_servers(broker)]


def compression(settings: Settings) -> str | None:
    """The producer codec of the worker's own records (aiokafka's `compression_type`)."""
    return None if settings.compression_type == "none" else settings.compression_type


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


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """The same security settings as Faust's `broker_credentials`."""
    import faust  # here: the config check uses this module, and needs no Faust

    sec = settings.security
    if sec.security_protocol.startswith("SASL"):
        context = ssl.create_default_context(cafile=sec.ssl_cafile) if sec.security_protocol == "SASL_SSL" else None
        return faust.SASLCredentials(
            username=sec.sasl_username,
            password=sec.sasl_password,
            mechanism=sec.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if sec.security_protocol == "SSL":
        return faust.SSLCredentials(ssl.create_default_context(cafile=sec.ssl_cafile))
    return None
