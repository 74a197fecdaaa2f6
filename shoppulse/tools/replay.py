"""`shoppulse replay`: real-world data files as canonical events, sent in timestamp order.

Formats (`FORMATS`):

- `rees46`: the REES46 multi-category store clickstream CSV. Every row is one click
  event; purchase rows that share `user_session` and `event_time` are also one
  `order_placed`.
- `online-retail`: the UCI Online Retail CSV. Every invoice is one order: `order_placed`,
  or `order_cancelled` when the invoice number starts with `C`.
- `incident-log`: the UCI incident management event log (ServiceNow). The updates of an
  incident become the life of a support ticket; see `_incident_events` for the mapping.
- `jsonl`: canonical events, one JSON object per line, with a `topic` field naming the
  stream (what `JsonlSink` writes), or without one and `--topic`. `replay` forwards the
  lines unchanged, invalid ones included, so the worker dead-letters them.

The CSV formats are converted deterministically: the same file gives the same events,
ids included, with `ts` in epoch milliseconds (every source time is taken as UTC).
"""

from __future__ import annotations

import asyncio
import csv
import functools
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path

import msgspec
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from ..errors import UserError
from ..streams.events import (
    RECORD_TYPES,
    ClickEvent,
    ClickEventType,
    Event,
    InvalidEvent,
    OrderEvent,
    OrderItem,
    Priority,
    TicketChannel,
    TicketEvent,
    TicketEventType,
    key_of,
    parse_ts,
)
from .sink import EventSink

FORMATS = ("rees46", "online-retail", "incident-log", "jsonl")


class ReplayError(UserError, ValueError):
    """A line of the file cannot be replayed; the message names the file and line."""


Converted = tuple[int, str, Event]  # (ts in epoch ms, stream, event)


def _utc_ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)


# Source times repeat a lot (per second or per minute), so each distinct string is parsed once.
@functools.lru_cache(maxsize=65_536)
def _rees46_ms(value: str) -> int:
    """ "2019-10-01 00:00:00 UTC" -> epoch ms."""
    return _utc_ms(datetime.fromisoformat(value.removesuffix(" UTC")))


@functools.lru_cache(maxsize=65_536)
def _retail_ms(value: str) -> int:
    """ "12/1/10 8:26" (M/D/YY H:MM) -> epoch ms."""
    return _utc_ms(datetime.strptime(value, "%m/%d/%y %H:%M"))


@functools.lru_cache(maxsize=65_536)
def _incident_ms(value: str) -> int | None:
    """ "29-02-2016 01:16" (DD-MM-YYYY HH:MM) -> epoch ms; "?" (missing) -> None."""
    return None if value == "?" else _utc_ms(datetime.strptime(value, "%d-%m-%Y %H:%M"))


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row; line numbers count the header as line 1."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        for row in reader:
            yield reader.line_num, row


# ------------------------------------------------------------------ rees46

REES46_EVENT_TYPES: dict[str, ClickEventType] = {
    "view": "product_view",
    "cart": "add_to_cart",
    "remove_from_cart": "remove_from_cart",
    "purchase": "purchase",
}


def _rees46_events(path: Path) -> Iterator[Converted]:
    """Click events in file order, then the orders; `read_events` sorts them by ts.

    An order is placed at the time of its purchase rows, so after the stable sort it
    follows the purchase clicks of the same second.
    """
    orders: dict[tuple[str, int], OrderEvent] = {}  # (session, ts) -> order, in first-row order
    for line, row in _csv_rows(path):
        event_type = REES46_EVENT_TYPES.get(row["event_type"])
        if event_type is None:
            raise ReplayError(f"{path}:{line}: unknown REES46 event_type {row['event_type']!r}")
        ts = _rees46_ms(row["event_time"])
        visitor = row["user_id"]
        # A few rows of the full data set have no user_session; a per-user session keeps
        # their events together (and out of the sessions of other users).
        session = row["user_session"] or f"u{visitor}"
        product, price = row["product_id"], float(row["price"])
        yield (
            ts,
            "clickstream",
            ClickEvent(
                event_id=f"rees46-{line}",
                event_type=event_type,
                ts=ts,
                session_id=session,
                visitor_id=visitor,
                page_type="product" if event_type == "product_view" else None,
                product_id=product,
                price=price,
                quantity=None if event_type == "product_view" else 1,
                currency="USD",
            ),
        )
        if event_type == "purchase":
            order = orders.get((session, ts))
            if order is None:
                order = orders[(session, ts)] = OrderEvent(
                    event_id=f"rees46-order-{session}-{ts}",
                    event_type="order_placed",
                    ts=ts,
                    order_id=f"{session}-{ts}",
                    customer_id=visitor,
                    session_id=session,
                    visitor_id=visitor,
                    currency="USD",
                    items=[],
                )
            _add_item(order.items, product, 1, price)
    for (_, ts), order in orders.items():
        yield ts, "orders", order


def _add_item(items: list[OrderItem], product: str, quantity: int, unit_price: float) -> None:
    """A product bought twice at the same price in one order is one item with the summed quantity."""
    for item in items:
        if item.product_id == product and item.unit_price == unit_price:
            item.quantity += quantity
            return
    items.append(OrderItem(product_id=product, quantity=quantity, unit_price=unit_price))


# ------------------------------------------------------------------ online retail


def _online_retail_events(path: Path) -> Iterator[Converted]:
    """One order event per InvoiceNo, at the time of its earliest line.

    - `C...` invoices are cancellations: `order_cancelled` with abs(Quantity) per item.
      Their numbers do not name the order they cancel (the data has no link), so the
      order_id is the cancellation's own invoice number.
    - A negative Quantity on an ordinary invoice is a stock write-off (price 0, no
      description, no customer), not a sale: the line is dropped, and an invoice left
      without lines is not an order. In the 2010-12 sample these are 67 invoices of one
      line each.
    - Lines stay as they are, including non-product codes (POST postage, M manual, fees)
      and repeated StockCodes within an invoice.
    - Empty CustomerID: a guest order (`customer_id` null).
    """
    invoices: dict[str, OrderEvent] = {}  # in order of first appearance
    earliest: dict[str, int] = {}  # invoice -> the time of its earliest line
    for _, row in _csv_rows(path):
        number = row["InvoiceNo"]
        cancelled = number.startswith("C")
        quantity = int(row["Quantity"])
        ts = _retail_ms(row["InvoiceDate"])
        order = invoices.get(number)
        if order is None:
            order = invoices[number] = OrderEvent(
                event_id=f"online-retail-{number}",
                event_type="order_cancelled" if cancelled else "order_placed",
                ts=ts,
                order_id=number,
                customer_id=row["CustomerID"] or None,
                currency="GBP",
                channel="online",
                items=[],
            )
        order.ts = earliest[number] = min(earliest.get(number, ts), ts)
        if quantity < 0 and not cancelled:
            continue
        item = OrderItem(product_id=row["StockCode"], quantity=abs(quantity), unit_price=float(row["UnitPrice"]))
        order.items.append(item)
    for number, order in invoices.items():
        if order.items:
            yield earliest[number], "orders", order


# ------------------------------------------------------------------ incident log

PRIORITIES: dict[str, Priority] = {
    "1 - Critical": "urgent",
    "2 - High": "high",
    "3 - Moderate": "normal",
    "4 - Low": "low",
}
PRIORITY_RANK: dict[Priority, int] = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
# contact_type -> channel; anything else: web
CONTACT_CHANNELS: dict[str, TicketChannel] = {"Phone": "phone", "Email": "email", "Self service": "web"}
SOLVED_STATES = {"Resolved", "Closed"}
AWAITING_USER = "Awaiting User Info"


@dataclass(slots=True)
class _Incident:
    state: str
    priority: Priority | None
    last_ts: int  # event times of one ticket never go backwards


def _transition_event(old: str, new: str) -> tuple[TicketEventType, bool | None] | None:
    """(event_type, public) for an incident_state change, or None when it is not a ticket event."""
    if new in SOLVED_STATES:
        return None if old in SOLVED_STATES else ("ticket_solved", None)
    if old in SOLVED_STATES:
        return "ticket_reopened", None
    if new == AWAITING_USER:
        return "agent_replied", True
    if new == "Active":
        if old == "New":
            return "agent_replied", True
        if old == AWAITING_USER:
            return "customer_replied", None
        return None
    if new.startswith("Awaiting"):
        return "agent_replied", False
    return None


def _incident_events(path: Path) -> Iterator[Converted]:
    """Each incident becomes one ticket; its rows (updates) are read in file order.

    | source                                              | ticket event                         |
    |-----------------------------------------------------|--------------------------------------|
    | first row of an incident                            | ticket_created at `opened_at`        |
    | state New -> Active                                 | agent_replied, public (first touch)  |
    | any open state -> Awaiting User Info                | agent_replied, public (asks the user)|
    | Awaiting User Info -> Active                        | customer_replied                     |
    | open state -> Awaiting Problem/Vendor/Evidence      | agent_replied, not public (internal) |
    | Awaiting Problem/Vendor/Evidence -> Active          | nothing (internal work resumes)      |
    | open state -> Resolved or Closed                    | ticket_solved                        |
    | Resolved -> Closed                                  | nothing (administrative close)       |
    | Resolved or Closed -> any open state                | ticket_reopened                      |
    | `priority` rises (e.g. 3 - Moderate -> 2 - High)    | ticket_escalated, with the new one   |

    A state event happens at the row's `sys_updated_at`. The state before an incident's
    first row counts as New, so an incident first seen Active has had its first reply.
    `ticket_solved` also uses `sys_updated_at`, the moment the state became Resolved,
    and not `resolved_at`: that column holds only the last resolution of a reopened
    incident and is re-stamped by later updates while Resolved. The log has no
    escalation column; `made_sla` flips record SLA breaches, which the worker computes
    itself. Times are clamped so a ticket's events never go backwards (a few rows are
    updated before `opened_at`, or out of order).

    Every event carries the incident's attributes as of that row: customer_id =
    `caller_id`, agent_id = `assigned_to`, category = `category`, priority from
    `priority` (1 - Critical: urgent, 2 - High: high, 3 - Moderate: normal, 4 - Low: low),
    channel from `contact_type` (Phone: phone, Email: email, Self service: web, else web).
    """
    incidents: dict[str, _Incident] = {}
    for line, row in _csv_rows(path):
        number = row["number"]
        updated = _incident_ms(row["sys_updated_at"])
        priority = PRIORITIES.get(row["priority"])
        incident = incidents.get(number)
        if incident is None:
            opened = _incident_ms(row["opened_at"]) or updated
            if opened is None:
                raise ReplayError(f"{path}:{line}: incident {number} has neither opened_at nor sys_updated_at")
            incident = incidents[number] = _Incident("New", priority, opened)
            yield _ticket_event(row, f"incident-log-{number}-created", "ticket_created", opened)
        ts = incident.last_ts = max(updated or incident.last_ts, incident.last_ts)
        if priority and incident.priority and PRIORITY_RANK[priority] < PRIORITY_RANK[incident.priority]:
            yield _ticket_event(row, f"incident-log-{line}-ticket_escalated", "ticket_escalated", ts)
        incident.priority = priority or incident.priority
        state = row["incident_state"]
        if state != incident.state:
            change = _transition_event(incident.state, state)
            if change is not None:
                event_type, public = change
                yield _ticket_event(row, f"incident-log-{line}-{event_type}", event_type, ts, public)
            incident.state = state


def _ticket_event(
    row: dict[str, str], event_id: str, event_type: TicketEventType, ts: int, public: bool | None = None
) -> Converted:
    return (
        ts,
        "tickets",
        TicketEvent(
            event_id=event_id,
            event_type=event_type,
            ts=ts,
            ticket_id=row["number"],
            customer_id=_known(row["caller_id"]),
            channel=CONTACT_CHANNELS.get(row["contact_type"], "web"),
            category=_known(row["category"]),
            priority=PRIORITIES.get(row["priority"]),
            agent_id=_known(row["assigned_to"]),
            public=public,
        ),
    )


def _known(value: str) -> str | None:
    return None if value in ("?", "") else value


# ------------------------------------------------------------------ jsonl


class _TopicField(msgspec.Struct):
    topic: str | None = None


_STREAM_NAMES = ", ".join(RECORD_TYPES)
_topic_decoder = msgspec.json.Decoder(_TopicField)
_decoders = {stream: msgspec.json.Decoder(record_type) for stream, record_type in RECORD_TYPES.items()}


@dataclass(slots=True)
class _JsonlLine:
    number: int
    stream: str
    raw: bytes
    event: Event | None  # None: the line does not decode as an event of `stream`
    error: str | None


def _jsonl_lines(path: Path, topic: str | None) -> Iterator[_JsonlLine]:
    """Every non-blank line with its stream: the line's `topic` field, else `topic`."""
    if topic is not None and topic not in RECORD_TYPES:
        raise ValueError(f"unknown topic {topic!r}; expected one of {_STREAM_NAMES}")
    with path.open("rb") as file:
        for number, line in enumerate(file, 1):
            raw = line.rstrip(b"\r\n")
            if not raw.strip():
                continue
            try:
                stream = _topic_decoder.decode(raw).topic or topic
            except msgspec.DecodeError:  # not a JSON object, or a non-string topic
                stream = topic
            if stream is None:
                raise ReplayError(f"{path}:{number}: no `topic` field on the line; pass a topic for such lines")
            if stream not in RECORD_TYPES:
                raise ReplayError(f"{path}:{number}: unknown topic {stream!r}; expected one of {_STREAM_NAMES}")
            try:
                yield _JsonlLine(number, stream, raw, _decoders[stream].decode(raw), None)
            except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
                yield _JsonlLine(number, stream, raw, None, str(exc))


def _jsonl_events(path: Path, topic: str | None) -> Iterator[tuple[str, Event]]:
    for line in _jsonl_lines(path, topic):
        if line.event is None:
            raise ReplayError(f"{path}:{line.number}: not a valid {line.stream} event: {line.error}")
        yield line.stream, line.event


# ------------------------------------------------------------------ reading

_CONVERTERS = {"rees46": _rees46_events, "online-retail": _online_retail_events, "incident-log": _incident_events}


def _converted(fmt: str, path: Path) -> list[Converted]:
    """A CSV format's events, sorted by ts (stable)."""
    if fmt not in _CONVERTERS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return sorted(_CONVERTERS[fmt](path), key=itemgetter(0))


def read_events(fmt: str, path: str | Path, topic: str | None = None) -> Iterator[tuple[str, Event]]:
    """(stream, event) for every event in the file.

    CSV formats: converted and sorted by ts (stable). jsonl: the lines in file order (so
    late events stay late); a line that does not decode raises ValueError naming it.
    `topic` is the stream of jsonl lines without a `topic` field.
    """
    path = Path(path)
    if fmt == "jsonl":
        return _jsonl_events(path, topic)
    return ((stream, event) for _, stream, event in _converted(fmt, path))


# ------------------------------------------------------------------ replaying


@dataclass(slots=True)
class _Outgoing:
    stream: str
    event: Event | None  # None: an invalid jsonl line, forwarded for dead-lettering
    ts_ms: int | None  # None: no usable timestamp; sent without pacing or rebasing
    raw: bytes | None = None  # jsonl: the original line, sent as-is
    key: bytes = b""  # with `raw`

    @property
    def label(self) -> str:
        return "invalid" if self.event is None else self.event.event_type


def _outgoing(fmt: str, path: Path, topic: str | None) -> list[_Outgoing]:
    if fmt != "jsonl":
        return [_Outgoing(stream, event, ts) for ts, stream, event in _converted(fmt, path)]
    result = []
    for line in _jsonl_lines(path, topic):
        if line.event is None:
            result.append(_Outgoing(line.stream, None, None, line.raw))
            continue
        try:
            ts_ms: int | None = parse_ts(line.event.ts)
        except InvalidEvent:  # a bad timestamp: the worker dead-letters the line
            ts_ms = None
        key = key_of(line.stream, line.event).encode()
        result.append(_Outgoing(line.stream, line.event, ts_ms, line.raw, key))
    return result


def _rebase(outgoing: Iterable[_Outgoing], now_ms: int) -> None:
    """Shift every timestamp by the same amount so the first one is `now_ms`.

    A rebased jsonl line is re-encoded (its ts changed); lines without a usable ts stay as they are.
    """
    shift = None
    for out in outgoing:
        if out.ts_ms is None or out.event is None:
            continue
        if shift is None:
            shift = now_ms - out.ts_ms
        out.ts_ms += shift
        out.event = msgspec.structs.replace(out.event, ts=out.ts_ms)
        out.raw = None


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} events/s", style="progress.data.speed")


async def replay(
    fmt: str,
    path: str | Path,
    sink: EventSink,
    *,
    speed: float | None = None,
    rebase_time: bool = False,
    show_progress: bool = True,
    topic: str | None = None,
    end_watermark_after_ms: int | None = None,
) -> Counter:
    """Send the events of `path` to `sink`; returns counts by (stream, event_type).

    end_watermark_after_ms: then end each stream with a watermark record on every partition,
    this long after its last event (at most now): the worker closes the replay's last windows
    and sessions at once, instead of at wall-clock speed once its partitions are idle. Counted
    as (stream, "watermark").

    speed: None sends as fast as the sink takes them; N sends N times faster than event
    time (a ts gap of N seconds takes one second). rebase_time: shift all timestamps so
    the first event is now, keeping the gaps, and send them as epoch ms. The worker
    dead-letters events more than a day ahead of its clock, so a rebased file spanning
    more than a day stays valid only near real-time speed. jsonl lines that do not decode
    are forwarded unchanged and counted as (stream, "invalid").
    """
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be positive, not {speed}")
    path = Path(path)
    outgoing = _outgoing(fmt, path, topic)  # everything up front: errors before sending, and a total
    if rebase_time:
        _rebase(outgoing, int(time.time() * 1000))
    counts: Counter = Counter()
    progress = Progress(
        TextColumn("[bold]replay[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=False,
    )
    with progress:
        task = progress.add_task(f"{fmt} {path.name}", total=len(outgoing))
        started = time.monotonic()
        first_ts = next((out.ts_ms for out in outgoing if out.ts_ms is not None), None)
        for out in outgoing:
            if speed is not None and out.ts_ms is not None and first_ts is not None:
                delay = (out.ts_ms - first_ts) / 1000 / speed - (time.monotonic() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
            if out.raw is not None:
                await sink.write(out.stream, out.key, out.raw)
            elif out.event is not None:
                await sink.send(out.stream, out.event)
            else:  # _outgoing gives every invalid line its raw bytes, and _rebase keeps them
                raise AssertionError(f"{out.stream} line with neither an event nor its raw bytes")
            counts[(out.stream, out.label)] += 1
            progress.advance(task)
    if end_watermark_after_ms is not None:
        now_ms = int(time.time() * 1000)
        last: dict[str, int] = {}
        for out in outgoing:
            if out.ts_ms is not None:
                last[out.stream] = max(out.ts_ms, last.get(out.stream, 0))
        for stream, ts_ms in sorted(last.items()):
            counts[(stream, "watermark")] += await sink.watermark(stream, min(ts_ms + end_watermark_after_ms, now_ms))
    return counts
