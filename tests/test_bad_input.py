"""Bad input: every generated invalid payload gets a reason. The generator is shared with
tests/test_dataplane.py, which sends over 10,000 of them through a worker, interleaved with a
valid stream: each lands on the dead-letter topic, and the worker keeps going."""

from __future__ import annotations

import time
import urllib.request

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoppulse.streams.events import EVENT_TYPES, REASONS, InvalidEvent, parse

NOW_MS = 4_102_444_800_000  # 2100-01-01: "future" payloads stay in the future whatever the date of the run
VALID = {
    "clickstream": {
        "event_id": "e1",
        "event_type": "page_view",
        "ts": NOW_MS - 1000,
        "session_id": "s",
        "visitor_id": "v",
    },
    "orders": {
        "event_id": "e1",
        "event_type": "order_placed",
        "ts": NOW_MS - 1000,
        "order_id": "o",
        "customer_id": "c",
    },
    "tickets": {"event_id": "e1", "event_type": "ticket_created", "ts": NOW_MS - 1000, "ticket_id": "t"},
}
streams = st.sampled_from(sorted(VALID))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)


@st.composite
def invalid_payload(draw) -> tuple[str, bytes, str]:
    """(stream, payload, kind) where the payload is invalid in one chosen way."""
    stream = draw(streams)
    kind = draw(
        st.sampled_from(
            [
                "bytes",
                "text",
                "json_non_object",
                "missing",
                "wrong_type",
                "unknown_type",
                "future",
                "too_large",
                "bad_ts",
            ]
        )
    )
    record = dict(VALID[stream])
    if kind == "bytes":
        payload = b"\xff" + draw(st.binary(max_size=40))
    elif kind == "text":
        payload = ("{" + draw(st.text(max_size=40))).encode()
    elif kind == "json_non_object":
        payload = orjson.dumps(draw(st.one_of(json_scalars, st.lists(json_scalars, max_size=3))))
    elif kind == "missing":
        del record[draw(st.sampled_from(sorted(k for k in record)))]
        payload = orjson.dumps(record)
    elif kind == "wrong_type":
        field = draw(st.sampled_from(["event_id", "ts"] + [k for k in record if k.endswith("_id")]))
        record[field] = draw(
            st.one_of(
                st.lists(st.integers(0, 1000), max_size=2),
                st.booleans(),
                st.floats(allow_nan=False, allow_infinity=False),
                st.dictionaries(st.text(max_size=3), st.integers(0, 1000), max_size=2),
            )
        )
        payload = orjson.dumps(record)
    elif kind == "unknown_type":
        record["event_type"] = draw(st.text(max_size=15).filter(lambda t: t not in EVENT_TYPES[stream]))
        payload = orjson.dumps(record)
    elif kind == "future":
        record["ts"] = NOW_MS + 86_400_000 + draw(st.integers(1, 10**9))
        payload = orjson.dumps(record)
    elif kind == "too_large":
        record["padding"] = "x" * (256 * 1024)
        payload = orjson.dumps(record)
    else:
        record["ts"] = draw(st.sampled_from(["yesterday", "2024-13-01T00:00:00Z", "2024-01-01T00:00:00", ""]))
        payload = orjson.dumps(record)
    return stream, payload, kind


def collect_invalid(n: int) -> list[tuple[str, bytes, str, str]]:
    """Run the property over the real parse path and keep every example for the broker test."""
    collected: list[tuple[str, bytes, str, str]] = []

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(invalid_payload())
    def check(example):
        stream, payload, kind = example
        with pytest.raises(InvalidEvent) as info:
            parse(stream, payload, now_ms=NOW_MS)
        assert info.value.reason in REASONS
        assert info.value.reason != "late"
        collected.append((stream, payload, kind, info.value.reason))

    check()
    return collected


ITEMS = [{"product_id": "p1", "quantity": 2, "unit_price": 10.0, "unit_cost": 4.0}]


@pytest.mark.parametrize(
    "change, valid",
    [
        ({"items": ITEMS, "discount": 20.0}, True),  # a 100 % discount: revenue 0
        ({"items": ITEMS, "discount": 20.5}, False),  # negative revenue
        ({"items": ITEMS, "discount": -1.0}, False),
        ({"items": [{**ITEMS[0], "unit_cost": -0.5}]}, False),
        ({"event_type": "order_refunded", "refund_amount": -3.0}, False),
        ({"event_type": "order_refunded", "refund_amount": 3.0}, True),
    ],
)
def test_order_amounts_that_would_make_a_money_sum_negative_are_invalid(change, valid):
    payload = orjson.dumps({**VALID["orders"], **change})
    if valid:
        parse("orders", payload, now_ms=NOW_MS)
        return
    with pytest.raises(InvalidEvent) as info:
        parse("orders", payload, now_ms=NOW_MS)
    assert info.value.reason == "invalid_value"


def test_every_invalid_payload_has_a_reason():
    examples = collect_invalid(1200)
    assert len(examples) >= 1000
    kinds = {kind for _, _, kind, _ in examples}
    assert len(kinds) == 9  # every way of being wrong was generated


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def _wait_for_metrics(port: int, ns, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _scrape(port)
            time.sleep(3)  # metrics are served just before the data plane subscribes
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail("worker did not start\n" + ns.worker_log())
