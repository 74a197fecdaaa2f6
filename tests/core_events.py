"""Small builders for the core's unit tests: parsed events at seconds after T0, engine outputs by window.

Times are given in seconds after T0 (an hour boundary, so every window size starts there).
"""

from __future__ import annotations

import itertools

from shoppulse.settings import Settings
from shoppulse.streams.engines import PartitionEngine
from shoppulse.streams.events import ClickEvent, OrderEvent, OrderItem, Parsed, TicketEvent
from shoppulse.streams.measures import Measures
from shoppulse.streams.partials import Progress, Snapshot

T0 = 472_223 * 3_600_000  # 2023-11-14 22:00 UTC
WALL_MS = T0 + 10 * 86_400_000  # the wall clock the batches arrive at (only idleness reads it)
MINUTE = 60_000

_ids = itertools.count()


def at(seconds: float) -> int:
    return T0 + round(seconds * 1000)


def settings(**overrides) -> Settings:
    """1 and 5 minute windows, 10 s grace, 10 min sessions, 2 min dedup horizon."""
    base = {
        "windows_seconds": (60, 300),
        "grace_seconds": 10.0,
        "session_timeout_seconds": 600.0,
        "dedup_horizon_seconds": 120.0,
        "partitions": 2,
    }
    return Settings(**(base | overrides))


def _event_id(event_id: str | None) -> str:
    return event_id if event_id is not None else f"e{next(_ids)}"


def click(event_type: str, seconds: float, visitor: str = "v1", session: str = "s1", event_id=None, **fields) -> Parsed:
    ts = at(seconds)
    event = ClickEvent(
        event_id=_event_id(event_id), event_type=event_type, ts=ts, session_id=session, visitor_id=visitor, **fields
    )
    return Parsed("clickstream", event, ts)


def item(product: str, quantity: int, price: float, cost: float | None = None) -> OrderItem:
    return OrderItem(product_id=product, quantity=quantity, unit_price=price, unit_cost=cost)


def order(
    event_type: str, seconds: float, customer: str | None = "c1", order_id="o1", event_id=None, **fields
) -> Parsed:
    ts = at(seconds)
    event = OrderEvent(
        event_id=_event_id(event_id), event_type=event_type, ts=ts, order_id=order_id, customer_id=customer, **fields
    )
    return Parsed("orders", event, ts)


def ticket(event_type: str, seconds: float, ticket_id: str = "t1", event_id=None, **fields) -> Parsed:
    ts = at(seconds)
    event = TicketEvent(event_id=_event_id(event_id), event_type=event_type, ts=ts, ticket_id=ticket_id, **fields)
    return Parsed("tickets", event, ts)


def finals(messages: list[Snapshot | Progress], family: str, size_ms: int = MINUTE) -> dict[float, Measures]:
    """Snapshots of `family` windows of `size_ms`, by window start in seconds after T0."""
    return {
        (m.start_ms - T0) / 1000: m.measures
        for m in messages
        if isinstance(m, Snapshot) and m.family == family and m.size_ms == size_ms
    }


def marks(messages: list[Snapshot | Progress], family: str) -> list[tuple[int, int]]:
    """(from_ms, through_ms) of each Progress of `family` that moved."""
    return [
        (m.from_ms, m.through_ms)
        for m in messages
        if isinstance(m, Progress) and m.family == family and m.through_ms > m.from_ms
    ]


def persist(engine: PartitionEngine, store: dict[str, bytes]) -> None:
    """Write the engine's changes to `store` as a worker writes its table."""
    for key, value in engine.take_changes().items():
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value


def restored(engine: PartitionEngine, store: dict[str, bytes]) -> PartitionEngine:
    """A new engine of the same kind and partition, rebuilt from `store`."""
    fresh = type(engine)(engine.partition, engine.settings)
    fresh.restore(store.items())
    return fresh


def whole_window(engine: PartitionEngine, key: tuple[str, int, int]) -> Measures:
    """A window's state as its snapshot would carry it: its base and its delta merged (a copy)."""
    return Measures().merge(engine.window_bases.get(key, Measures())).merge(engine.windows[key])


def state_of(engine: PartitionEngine) -> dict:
    """Everything the base engine keeps that a restart must rebuild."""
    return {
        "watermark": engine.watermark.event_ms,
        "progress": dict(engine.progress),
        "windows": {key: whole_window(engine, key).dump() for key in engine.windows},
        "id_groups": {group: max_ts for group, (max_ts, _) in engine.event_ids.groups.items()},
        "next_group": engine.next_group,
        "next_close": engine.next_close,
    }
