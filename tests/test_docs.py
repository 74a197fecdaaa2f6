"""The docs name everything the code defines: KPIs, gauges, event fields, event types, reason codes.

Each JSON example in docs/events.md whose `event_type` is known must pass the worker's parser.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

from shoppulse.streams import events
from shoppulse.streams.kpis import CATALOGUE, counters

DOCS = Path(__file__).resolve().parents[1] / "docs"
FAR_FUTURE_MS = 4_000_000_000_000  # year 2096: no example is "in the future"


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _code_spans(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


def _json_blocks(text: str) -> list[str]:
    return re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)


# ------------------------------------------------------------------ kpis.md


@pytest.mark.parametrize("kpi", CATALOGUE, ids=lambda k: k.key)
def test_kpi_key_documented(kpi):
    assert kpi.key in _code_spans(_read("kpis.md")), f"KPI `{kpi.key}` missing from docs/kpis.md"


@pytest.mark.parametrize("kpi", [k for k in CATALOGUE if not k.insight], ids=lambda k: k.key)
def test_kpi_gauge_documented(kpi):
    assert kpi.metric in _code_spans(_read("kpis.md")), f"gauge `{kpi.metric}` missing from docs/kpis.md"


@pytest.mark.parametrize("kpi", [k for k in CATALOGUE if k.insight], ids=lambda k: k.key)
def test_insight_kpi_documented_without_gauge(kpi):
    """Insight lists have no gauge (exporters skip them); the doc must not invent one."""
    doc = _read("kpis.md")
    row = next((line for line in doc.splitlines() if line.startswith(f"| `{kpi.key}` |")), None)
    assert row is not None, f"no catalogue row for `{kpi.key}`"
    assert kpi.metric not in row and "insight list" in row


def test_counters_documented():
    spans = _code_spans(_read("kpis.md"))
    missing = sorted(f"shoppulse_{c.name}_total" for c in counters() if f"shoppulse_{c.name}_total" not in spans)
    assert not missing, f"counters missing from docs/kpis.md: {missing}"


def test_pipeline_metric_families_documented():
    from prometheus_client import CollectorRegistry

    from shoppulse.outputs.prometheus import Metrics

    metrics = Metrics(CollectorRegistry())
    spans = _code_spans(_read("kpis.md"))
    names = set()
    for metric in metrics.registry.collect():
        names.add(metric.name + ("_total" if metric.type == "counter" else ""))
    missing = sorted(n for n in names if n not in spans)
    assert not missing, f"metric families missing from docs/kpis.md: {missing}"


# ------------------------------------------------------------------ events.md


@pytest.mark.parametrize(
    "record_type",
    [events.ClickEvent, events.OrderEvent, events.OrderItem, events.TicketEvent],
    ids=lambda t: t.__name__,
)
def test_event_fields_documented(record_type):
    spans = _code_spans(_read("events.md"))
    missing = [f.name for f in msgspec.structs.fields(record_type) if f.name not in spans]
    assert not missing, f"{record_type.__name__} fields missing from docs/events.md: {missing}"


def _examples() -> list[dict]:
    out = []
    for block in _json_blocks(_read("events.md")):
        record = json.loads(block)  # every json block must be valid JSON
        out.append(record)
    return out


def test_every_event_type_has_an_example():
    documented = {r.get("event_type") for r in _examples() if isinstance(r, dict)}
    missing = [t for types in events.EVENT_TYPES.values() for t in types if t not in documented]
    assert not missing, f"event types without a JSON example in docs/events.md: {missing}"


def test_examples_parse():
    checked = 0
    for record in _examples():
        stream = events.STREAM_OF_EVENT_TYPE.get(record.get("event_type")) if isinstance(record, dict) else None
        if stream is None:
            continue  # not an event (e.g. the dead-letter record)
        payload = json.dumps(record).encode()
        parsed = events.parse(stream, payload, now_ms=FAR_FUTURE_MS)
        assert parsed.event.event_type == record["event_type"]
        checked += 1
    assert checked == sum(len(t) for t in events.EVENT_TYPES.values())


def test_reason_codes_documented():
    spans = _code_spans(_read("events.md"))
    missing = [r for r in events.REASONS if r not in spans]
    assert not missing, f"dead-letter reasons missing from docs/events.md: {missing}"


def test_dead_letter_fields_documented():
    record = events.dead_letter(
        payload=b"{}", reason="invalid_json", detail="x", topic="t", partition=0, offset=0, now_ms=0
    )
    spans = _code_spans(_read("events.md"))
    missing = [f for f in record if f not in spans]
    assert not missing, f"dead-letter fields missing from docs/events.md: {missing}"


def test_kpi_results_fields_documented():
    from shoppulse.outputs.kpi_results import records
    from shoppulse.streams.kpis import Value
    from shoppulse.streams.merge import WindowResult

    result = WindowResult("sales", 60_000, 0, True, [Value("refund_rate", 0.5, {}, 1, 2)])
    ((_, _, value),) = records("kpi-results", [result], 0)
    spans = _code_spans(_read("kpis.md"))
    missing = [f for f in json.loads(value) if f not in spans]
    assert not missing, f"kpi-results fields missing from docs/kpis.md: {missing}"
