"""The pure core: events and parsing, windows and watermarks, measures, the per-stream
engines, partials, the merger, the KPI catalogue and goals, the kpi-results codec, and the
transport-free pipeline driver. No Faust, no Kafka, no Prometheus, no I/O (a test checks).
"""
