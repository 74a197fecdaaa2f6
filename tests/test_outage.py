"""A checkout outage drives conversion_rate to 0 in the closed windows that follow.

Normal traffic, then the generator switches to `checkout-outage` (views and carts go on,
no purchase succeeds). The worker must close the following windows with conversion 0:
no purchase event is needed to close them, and the last ones close after traffic stops
(the quiet stream's clock moves at wall-clock speed from its last event), not by new events.
"""

from __future__ import annotations

import msgspec
import oracle
import orjson
import pytest

from shoppulse.tools.generate import GeneratorConfig, TrafficGenerator

pytestmark = pytest.mark.integration

START_MS = 1_700_000_040_000 - 1_700_000_040_000 % 300_000  # aligned to 5 minutes
SWITCH_MS = START_MS + 20 * 60_000
END_MS = SWITCH_MS + 20 * 60_000


def test_checkout_outage_drives_conversion_to_zero(namespace, tmp_path):
    generator = TrafficGenerator(GeneratorConfig(rate=15, seed=5), START_MS)
    events = generator.advance(SWITCH_MS)
    generator.scenario = "checkout-outage"
    events += generator.advance(END_MS)
    path = tmp_path / "outage.jsonl"
    with path.open("wb") as f:
        for stream, event in events:
            f.write(orjson.dumps({**msgspec.to_builtins(event), "topic": stream}) + b"\n")

    # Once traffic stops, the stream's clock moves at wall-clock speed: a short session timeout
    # and grace close the last sessions' windows within about a minute.
    ns = namespace(idle_timeout_seconds=5, session_timeout_seconds=60, grace_seconds=5)
    assert ns.shoppulse("replay", "jsonl", str(path), "--quiet").returncode == 0
    ns.start_worker()
    last_start = oracle.iso(END_MS - 60_000)  # the last minute with traffic

    def closed_through_the_end(records):
        return any(
            r["final"] and r["kpi"] == "conversion_rate" and r["window"] == "1m" and r["window_start"] == last_start
            for r in records
        )

    records = ns.read_topic(ns.topics["results"], quiet_seconds=5, timeout=240, until=closed_through_the_end)
    conversion = {
        r["window_start"]: r for r in records if r["final"] and r["kpi"] == "conversion_rate" and r["window"] == "1m"
    }
    assert last_start in conversion, ns.worker_log()

    purchases_after = [e for s, e in events if s == "clickstream" and e.event_type == "purchase" and e.ts >= SWITCH_MS]
    assert not purchases_after, "the outage scenario still produced purchases"
    before = [r for start, r in conversion.items() if start < oracle.iso(SWITCH_MS)]
    after = [r for start, r in conversion.items() if oracle.iso(SWITCH_MS) <= start < oracle.iso(END_MS)]
    assert sum(r["numerator"] for r in before) > 0, "no conversions before the outage: the test proves nothing"
    assert len(after) == 20
    for record in after:
        assert record["denominator"] > 0, f"no sessions in {record['window_start']}"
        assert record["value"] == 0.0, f"conversion {record['value']} in {record['window_start']} during the outage"
