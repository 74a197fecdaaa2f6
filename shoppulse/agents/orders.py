"""orders topic -> sales windows (OrdersEngine) -> merge stage."""

from .source import wire_source


def wire(app, settings, metrics, partials):
    return wire_source("orders", app, settings, metrics, partials)
