"""`shoppulse tail` against a real replay and worker: every line is a valid kpi-results record
(docs/kpis.md, "The kpi-results topic"), and exactly the final records on the topic."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
from datetime import datetime

import pytest
from conftest import DATASETS, Namespace

from shoppulse.streams.goals import format_value
from shoppulse.streams.kpis import BY_KEY

pytestmark = pytest.mark.integration

SAMPLE = DATASETS / "uci-online-retail-2010-dec-head.csv"
WINDOW_SECONDS = {"1m": 60, "5m": 300, "1h": 3600}  # the default windows, as the contract labels them
RFC3339_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
FIELDS = {"kpi", "window", "window_start", "window_end", "dimensions", "value", "final", "emitted_at"}
# Values that are quotients must carry their numerator and denominator.
QUOTIENT_UNITS = {"ratio", "average", "score"}
QUOTIENT_KPIS = {"average_order_value", "revenue_per_visitor", "avg_session_duration_seconds"}


@pytest.fixture(scope="module")
def replayed(kafka_broker, tmp_path_factory):
    """A replay of the real sample, processed by a worker until its windows are final; then the worker stops,
    so the topic no longer changes."""
    ns = Namespace(kafka_broker, tmp_path_factory.mktemp("tail"), idle_timeout_seconds=5)
    try:
        result = ns.shoppulse("replay", "online-retail", str(SAMPLE), "--quiet")
        assert result.returncode == 0, result.stderr
        ns.start_worker()
        hour_final = lambda rs: any(r["final"] and r["kpi"] == "orders" and r["window"] == "1h" for r in rs)  # noqa: E731
        records = ns.read_topic(ns.topics["results"], quiet_seconds=8, timeout=300, until=hour_final)
        assert hour_final(records), ns.worker_log()
    finally:
        ns.stop_workers()
    ns.finals = [r for r in ns.read_topic(ns.topics["results"], quiet_seconds=3, timeout=60) if r["final"]]
    return ns


def _tail(ns, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return ns.shoppulse("tail", "--from-beginning", "--idle-exit", "8", *args, timeout=timeout)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_record(record: dict) -> None:
    assert FIELDS <= set(record) <= FIELDS | {"numerator", "denominator"}, record
    kpi = BY_KEY.get(record["kpi"])
    assert kpi is not None, f"unknown kpi {record['kpi']!r}"
    assert record["window"] in WINDOW_SECONDS, record
    for name in ("window_start", "window_end", "emitted_at"):
        assert RFC3339_UTC_MS.fullmatch(record[name]), (name, record[name])
    start, end = (datetime.fromisoformat(record[k]) for k in ("window_start", "window_end"))
    assert (end - start).total_seconds() == WINDOW_SECONDS[record["window"]], record
    assert start.timestamp() % WINDOW_SECONDS[record["window"]] == 0, record  # aligned to the epoch
    dims = record["dimensions"]
    allowed = {"item", "rank"} if kpi.insight else set(kpi.dims)  # insight lists rank items (docs/kpis.md)
    assert isinstance(dims, dict) and set(dims) <= allowed, record
    assert all(isinstance(v, str) for v in dims.values()), record
    assert record["value"] is None or _is_number(record["value"]), record
    assert record["final"] is True, record
    quotient = kpi.unit in QUOTIENT_UNITS or kpi.key in QUOTIENT_KPIS or kpi.key.endswith("_mean_seconds")
    assert ("numerator" in record) == quotient == ("denominator" in record), record
    if quotient:
        num, den = record["numerator"], record["denominator"]
        assert _is_number(num) and _is_number(den), record
        if den == 0:
            assert record["value"] is None, record
        else:
            expected = 100 * num / den if kpi.key == "nps" else num / den
            assert math.isclose(record["value"], expected, rel_tol=1e-9), record


def _canonical(records) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in records)


def test_tail_json_final_only_prints_every_final_record(replayed):
    result = _tail(replayed, "--json", "--final-only")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        _check_record(record)
    assert _canonical(records) == _canonical(replayed.finals)
    kpis = {r["kpi"] for r in records}
    assert {"orders", "revenue", "average_order_value", "units_per_order"} <= kpis
    assert {r["window"] for r in records} == set(WINDOW_SECONDS)


def test_tail_filters_and_pretty_prints(replayed):
    expected = [r for r in replayed.finals if r["kpi"] == "average_order_value" and r["window"] == "1h"]
    assert expected
    result = _tail(replayed, "--kpi", "average_order_value", "--window", "1h", "--final-only")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(expected), result.stdout
    shown = [
        (r["window_start"][11:19], r["dimensions"]["currency"], format_value("average_order_value", r["value"]))
        for r in expected
    ]
    for line in lines:
        assert " 1h " in line and "average_order_value" in line and line.rstrip().endswith("final"), line
    for start, currency, value in shown:
        assert any(f" {start}–" in line and f"currency={currency}" in line and value in line for line in lines), (
            start,
            currency,
            value,
            result.stdout,
        )


def test_tail_max_records(replayed):
    result = _tail(replayed, "--json", "--max-records", "3")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3


def test_tail_ctrl_c_exits_cleanly(replayed):
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoppulse.cli", "tail", "--from-beginning"],
        env=replayed.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline(), "tail printed nothing"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
