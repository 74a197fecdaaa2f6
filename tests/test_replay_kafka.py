"""`shoppulse replay` into the real broker: read back exactly what each sample holds."""

from __future__ import annotations

import csv
from collections import Counter

import pytest
from conftest import DATASETS

pytestmark = pytest.mark.integration


def _read_back(ns) -> Counter:
    """Records by (stream, event type); the end's watermark records as (stream, "watermark")."""
    counts: Counter = Counter()
    for stream in ("clickstream", "orders", "tickets"):
        counts.update((stream, r.get("event_type", "watermark")) for r in ns.read_to_end(ns.topics[stream]))
    return counts


def _events(counts: Counter) -> int:
    return sum(n for (_stream, kind), n in counts.items() if kind != "watermark")


def _watermarks(counts: Counter) -> dict[str, int]:
    return {stream: n for (stream, kind), n in counts.items() if kind == "watermark"}


def test_replay_rees46(namespace):
    ns = namespace()
    result = ns.shoppulse("replay", "rees46", str(DATASETS / "rees46-2019-oct-head.csv"), "--max-speed", "--quiet")
    assert result.returncode == 0, result.stderr
    with open(DATASETS / "rees46-2019-oct-head.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_type = Counter(r["event_type"] for r in rows)
    orders = {(r["user_session"], r["event_time"]) for r in rows if r["event_type"] == "purchase"}
    counts = _read_back(ns)
    assert counts[("clickstream", "product_view")] == by_type["view"] == 17_055
    assert counts[("clickstream", "add_to_cart")] == by_type["cart"] == 165
    assert counts[("clickstream", "purchase")] == by_type["purchase"] == 214
    assert counts[("orders", "order_placed")] == len(orders) == 214
    assert _events(counts) == len(rows) + len(orders)
    assert _watermarks(counts) == {"clickstream": 4, "orders": 4}  # one per partition of the topics sent to


def test_replay_online_retail(namespace):
    ns = namespace()
    path = DATASETS / "uci-online-retail-2010-dec-head.csv"
    result = ns.shoppulse("replay", "online-retail", str(path), "--quiet")
    assert result.returncode == 0, result.stderr
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    invoices = {r["InvoiceNo"] for r in rows}
    cancelled = {i for i in invoices if i.startswith("C")}
    # Invoices made only of negative-quantity lines are stock write-offs, not sales: skipped.
    sales = {r["InvoiceNo"] for r in rows if not r["InvoiceNo"].startswith("C") and int(r["Quantity"]) > 0}
    counts = _read_back(ns)
    assert len(invoices) == 1_275
    assert counts[("orders", "order_placed")] == len(sales) == 1_052
    assert counts[("orders", "order_cancelled")] == len(cancelled) == 156
    assert _events(counts) == len(sales) + len(cancelled)
    assert _watermarks(counts) == {"orders": 4}


def test_replay_incident_log(namespace):
    ns = namespace()
    path = DATASETS / "uci-incident-event-log-head.csv"
    result = ns.shoppulse("replay", "incident-log", str(path), "--quiet")
    assert result.returncode == 0, result.stderr
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    incidents = {r["number"] for r in rows}
    resolved = {r["number"] for r in rows if r["incident_state"] == "Resolved"}
    counts = _read_back(ns)
    assert counts[("tickets", "ticket_created")] == len(incidents) == 890
    assert counts[("tickets", "ticket_solved")] >= len(resolved)
