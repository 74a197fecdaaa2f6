"""Producer-side tools: the traffic generator, data file replay and their sinks."""
