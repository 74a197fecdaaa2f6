"""Event contracts for the three source topics: the one source of truth for field names.

`docs/events.md` describes the same records for producers; `tests/test_docs.py`
(`test_event_fields_documented`) checks that every field named here is documented there.

Timestamps arrive as RFC 3339 strings with a zone or as epoch milliseconds; `parse`
normalises them to epoch milliseconds (`ts_ms`) so the rest of the pipeline never
parses a date again.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar, get_args

import msgspec

ClickEventType = Literal[
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "begin_checkout",
    "purchase",
    "search",
    "promo_view",
    "promo_click",
    "email_open",
    "email_click",
    "newsletter_signup",
    "sms_signup",
    "unsubscribe",
    "chat_start",
    "review_submitted",
]
OrderEventType = Literal["order_placed", "order_cancelled", "order_refunded"]
TicketEventType = Literal[
    "ticket_created",
    "agent_replied",
    "customer_replied",
    "ticket_escalated",
    "ticket_solved",
    "ticket_reopened",
    "csat_rated",
    "nps_rated",
]
Device = Literal["desktop", "mobile", "tablet", "other"]
TicketChannel = Literal["email", "phone", "chat", "social", "web"]
NO_CHANNEL = "unknown"  # the channel of a ticket created without one
Priority = Literal["low", "normal", "high", "urgent"]
NO_PRIORITY: Priority = "normal"  # the priority of a ticket created without one

Timestamp = str | int  # RFC 3339 with a zone, or epoch milliseconds

# The three source streams: every topic name, engine, state table and counter label follows this.
Stream = Literal["clickstream", "orders", "tickets"]
STREAMS: tuple[Stream, ...] = get_args(Stream)


class ClickEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One clickstream event. Kafka key: visitor_id (see docs/events.md for why)."""

    event_id: str
    event_type: ClickEventType
    ts: Timestamp
    session_id: str
    visitor_id: str
    device: Device | None = None
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    page: str | None = None
    page_type: str | None = None
    product_id: str | None = None
    price: float | None = None
    quantity: int | None = None
    currency: str | None = None
    is_new_visitor: bool | None = None


class OrderItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    product_id: str
    quantity: int
    unit_price: float
    unit_cost: float | None = None


class OrderEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One order lifecycle event. Kafka key: customer_id (order_id for guests)."""

    event_id: str
    event_type: OrderEventType
    ts: Timestamp
    order_id: str
    customer_id: str | None  # required; null marks a guest checkout
    session_id: str | None = None
    visitor_id: str | None = None
    currency: str | None = None
    items: list[OrderItem] = []
    discount: float = 0.0
    shipping: float = 0.0
    tax: float = 0.0
    refund_amount: float | None = None
    is_first_order: bool | None = None
    channel: str | None = None


class TicketEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One support ticket event. Kafka key: ticket_id."""

    event_id: str
    event_type: TicketEventType
    ts: Timestamp
    ticket_id: str
    customer_id: str | None = None
    channel: TicketChannel | None = None
    category: str | None = None
    priority: Priority | None = None
    product_id: str | None = None
    agent_id: str | None = None
    score: int | None = None
    public: bool | None = None


Event = ClickEvent | OrderEvent | TicketEvent


class WatermarkRecord(msgspec.Struct, forbid_unknown_fields=True):
    """On any source topic: its producer has sent every event of this partition up to
    `watermark` (docs/events.md, "Watermark records"). It moves the partition's event time, so
    windows and sessions before it close without waiting for the idle timeout. Not an event:
    never counted, deduplicated or windowed."""

    watermark: Timestamp


# Logical stream name -> record type. Topic names are configurable; these names are not.
RECORD_TYPES: dict[str, type[Event]] = {
    "clickstream": ClickEvent,
    "orders": OrderEvent,
    "tickets": TicketEvent,
}
EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "clickstream": get_args(ClickEventType),
    "orders": get_args(OrderEventType),
    "tickets": get_args(TicketEventType),
}
STREAM_OF_EVENT_TYPE: dict[str, str] = {
    event_type: stream for stream, types in EVENT_TYPES.items() for event_type in types
}


def key_of(stream: str, event: Event) -> str:
    """The Kafka message key that co-locates the state an event touches."""
    if isinstance(event, ClickEvent):
        return event.visitor_id
    if isinstance(event, OrderEvent):
        return event.customer_id or event.order_id
    return event.ticket_id


# ---------------------------------------------------------------- parsing

# Reason codes for dead letters. Each has a counter; docs/events.md lists them.
REASONS = (
    "invalid_encoding",  # not UTF-8
    "invalid_json",  # not JSON, or not a JSON object
    "missing_field",
    "wrong_type",
    "unknown_event_type",
    "invalid_value",  # well-typed but impossible: bad timestamp, score out of range...
    "too_large",
    "future_timestamp",
    "late",  # set by the window engine, not by the parser
)

DAY_MS = 86_400_000


class InvalidEvent(Exception):
    """An input that cannot be processed; it goes to the dead-letter topic."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


E = TypeVar("E", ClickEvent, OrderEvent, TicketEvent)


@dataclass(slots=True)
class Parsed:
    stream: str
    event: Event | WatermarkRecord
    ts_ms: int

    def event_as(self, record_type: type[E]) -> E:
        """The event as its stream's record type; any other type is a wiring bug, not bad input."""
        if not isinstance(self.event, record_type):
            raise TypeError(f"a {type(self.event).__name__} where a {record_type.__name__} belongs")
        return self.event


_decoders = {name: msgspec.json.Decoder(rt) for name, rt in RECORD_TYPES.items()}
_decode_watermark = msgspec.json.Decoder(WatermarkRecord).decode


def parse_ts(value: Timestamp, field: str = "ts") -> int:
    """RFC 3339 (with zone) or epoch milliseconds -> epoch milliseconds."""
    if isinstance(value, int):
        if value < 0:
            raise InvalidEvent("invalid_value", f"negative epoch milliseconds {value} at `$.{field}`")
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent("invalid_value", f"{field} {value!r} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise InvalidEvent("invalid_value", f"{field} {value!r} has no time zone")
    return int(parsed.timestamp() * 1000)


def _classify(error: msgspec.ValidationError) -> str:
    text = str(error)
    if text.startswith("Object missing required field"):
        return "missing_field"
    if text.startswith("Invalid enum value") and "$.event_type" in text:
        return "unknown_event_type"
    if text.startswith("Expected"):
        return "wrong_type" if "$." in text else "invalid_json"
    return "invalid_value"


def parse(
    stream: str,
    payload: bytes,
    *,
    now_ms: int,
    max_bytes: int = 256 * 1024,
    max_future_ms: int = DAY_MS,
) -> Parsed:
    """Validate one raw message of `stream` received at `now_ms` (the caller's clock: a
    timestamp more than `max_future_ms` ahead of it is rejected). Raises InvalidEvent."""
    if len(payload) > max_bytes:
        raise InvalidEvent("too_large", f"{len(payload)} bytes, limit {max_bytes}")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("invalid_encoding", f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    event: Event | WatermarkRecord
    try:
        event = _decoders[stream].decode(payload)
    except msgspec.ValidationError as exc:
        # Events are the common case, so a watermark record is tried only once decoding failed.
        event = _watermark_record(payload, exc)
    except msgspec.DecodeError as exc:
        raise InvalidEvent("invalid_json", str(exc)) from None
    field, ts = ("watermark", event.watermark) if isinstance(event, WatermarkRecord) else ("ts", event.ts)
    ts_ms = parse_ts(ts, field)
    if ts_ms > now_ms + max_future_ms:
        raise InvalidEvent("future_timestamp", f"{field} {ts!r} is more than {max_future_ms // 1000} s ahead")
    if not isinstance(event, WatermarkRecord):
        _check_values(event)
    return Parsed(stream, event, ts_ms)


def _watermark_record(payload: bytes, event_error: msgspec.ValidationError) -> WatermarkRecord:
    """The payload as a watermark record, if it has the field; else the event's error."""
    if b'"watermark"' not in payload:
        raise InvalidEvent(_classify(event_error), str(event_error)) from None
    try:
        return _decode_watermark(payload)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(_classify(exc), f"watermark record: {exc}") from None


def _check_values(event: Event) -> None:
    if isinstance(event, TicketEvent) and event.score is not None:
        top = 5 if event.event_type == "csat_rated" else 10
        low = 1 if event.event_type == "csat_rated" else 0
        if not low <= event.score <= top:
            raise InvalidEvent("invalid_value", f"score {event.score} outside {low}..{top} for {event.event_type}")
    if isinstance(event, TicketEvent) and event.event_type in ("csat_rated", "nps_rated") and event.score is None:
        raise InvalidEvent("missing_field", f"{event.event_type} needs `score`")
    if isinstance(event, OrderEvent):
        for item in event.items:
            if item.quantity < 0 or item.unit_price < 0:
                raise InvalidEvent("invalid_value", f"negative quantity or price for item {item.product_id!r}")
            if item.unit_cost is not None and item.unit_cost < 0:
                raise InvalidEvent("invalid_value", f"negative unit_cost for item {item.product_id!r}")
        if event.discount < 0:
            raise InvalidEvent("invalid_value", f"negative discount {event.discount}")
        subtotal = sum(item.quantity * item.unit_price for item in event.items)
        if event.event_type == "order_placed" and event.discount > subtotal + 1e-9:
            raise InvalidEvent("invalid_value", f"discount {event.discount} exceeds the items' total {subtotal:g}")
        if event.refund_amount is not None and event.refund_amount < 0:
            raise InvalidEvent("invalid_value", f"negative refund_amount {event.refund_amount}")


def encode(event: Event) -> bytes:
    """Canonical JSON of an event, without the optional fields left unset."""
    return msgspec.json.encode(event)


def dead_letter(
    *, payload: bytes, reason: str, detail: str, topic: str, partition: int, offset: int, now_ms: int
) -> dict:
    """The dead-letter record: the original bytes, where they came from, why, and when (`now_ms`)."""
    try:
        original, encoding = payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        original, encoding = base64.b64encode(payload).decode("ascii"), "base64"
    return {
        "reason": reason,
        "detail": detail,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "payload": original,
        "payload_encoding": encoding,
        "dead_lettered_at_ms": now_ms,
    }
