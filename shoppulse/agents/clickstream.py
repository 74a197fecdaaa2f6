"""clickstream topic -> sessions and traffic windows (ClickstreamEngine) -> merge stage."""

from .source import wire_source


def wire(app, settings, metrics, partials):
    return wire_source("clickstream", app, settings, metrics, partials)
