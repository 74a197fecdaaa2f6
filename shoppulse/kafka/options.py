"""Settings to aiokafka client options, in one place."""

from __future__ import annotations

import ssl

from ..settings import KafkaSecurity, Settings, bootstrap_servers

__all__ = ["bootstrap_servers", "client_options", "compression"]


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
