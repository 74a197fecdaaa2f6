"""tickets topic -> ticket state and support windows (TicketsEngine) -> merge stage."""

from .source import wire_source


def wire(app, settings, metrics, partials):
    return wire_source("tickets", app, settings, metrics, partials)
