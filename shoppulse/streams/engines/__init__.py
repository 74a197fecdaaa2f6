"""One engine per source stream, on the shared base (`base.PartitionEngine`)."""

from __future__ import annotations

from ..events import Stream
from .base import BatchResult, PartitionEngine
from .clickstream import ClickstreamEngine
from .orders import OrdersEngine
from .tickets import TicketsEngine

ENGINES: dict[Stream, type[PartitionEngine]] = {
    "clickstream": ClickstreamEngine,
    "orders": OrdersEngine,
    "tickets": TicketsEngine,
}

__all__ = ["ENGINES", "BatchResult", "ClickstreamEngine", "OrdersEngine", "PartitionEngine", "TicketsEngine"]
