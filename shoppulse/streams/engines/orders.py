"""The orders engine: sales windows, first orders per customer."""

from __future__ import annotations

from ...settings import Settings
from ..cold import ColdStore, SeenKeys
from ..events import OrderEvent, Parsed
from ..measures import Measures, to_micros
from ..state_keys import CustomerKey, StateKey
from .base import BatchResult, PartitionEngine


class OrdersEngine(PartitionEngine):
    stream = "orders"
    families = ("sales",)

    def __init__(self, partition: int, settings: Settings, cold: ColdStore | None = None):
        super().__init__(partition, settings, cold)
        self.seen_customers = SeenKeys(self.cold, self.cold_prefix + "customers")
        self.restored_customers: list[str] = []  # collected by a restore, stored in one write

    def on_event(self, parsed: Parsed, result: BatchResult) -> None:
        event = parsed.event_as(OrderEvent)
        windows = self.measures_for("sales", parsed.ts_ms)
        currency = event.currency or "unknown"
        if event.event_type == "order_placed":
            self._placed(event, currency, windows)
        elif event.event_type == "order_cancelled":
            for m in windows:
                m.inc("cancellations")
        else:
            amount = event.refund_amount
            if amount is None:
                amount = sum(i.quantity * i.unit_price for i in event.items)
            for m in windows:
                m.inc("refunds")
                m.inc_label("refund_micros", currency, to_micros(amount))

    def _placed(self, event: OrderEvent, currency: str, windows: list[Measures]) -> None:
        revenue = to_micros(sum(i.quantity * i.unit_price for i in event.items) - event.discount)
        units = sum(i.quantity for i in event.items)
        costs = [i.quantity * i.unit_cost for i in event.items if i.unit_cost is not None]
        cost = to_micros(sum(costs)) if event.items and len(costs) == len(event.items) else None
        customer = event.customer_id
        first_sight = customer is not None and customer not in self.seen_customers
        first = event.is_first_order if event.is_first_order is not None else first_sight
        if customer is not None and first_sight:
            self.seen_customers.add(customer)
            self.changed.add(CustomerKey(customer))
        products = sorted({i.product_id for i in event.items})
        for m in windows:
            m.inc("orders")
            m.inc("units", units)
            m.inc_label("orders_by_currency", currency)
            m.inc_label("revenue_micros", currency, revenue)
            if cost is not None:  # only orders with every item's cost count towards the margin
                m.inc_label("costed_revenue_micros", currency, revenue)
                m.inc_label("cost_micros", currency, cost)
                m.inc_label("profit_micros", currency, revenue - cost)
            if customer is not None:
                m.inc("new_customer_orders" if first else "returning_customer_orders")
        top = windows[-1]  # insight lists: the largest window only
        for item in event.items:
            top.top_items("product_revenue_micros").add(item.product_id, to_micros(item.quantity * item.unit_price))
            top.top_items("product_units").add(item.product_id, item.quantity)
        pairs = top.top_items("product_pairs")
        for i, a in enumerate(products):
            for b in products[i + 1 :]:
                pairs.add(f"{a}+{b}")

    def dump_entity(self, key: StateKey) -> bytes | None:
        if isinstance(key, CustomerKey):
            return b"1"
        raise KeyError(key)

    def restore_entity(self, key: StateKey, value: bytes) -> None:
        if not isinstance(key, CustomerKey):
            raise KeyError(key)
        self.restored_customers.append(key.customer_id)

    def entities_restored(self) -> None:
        self.seen_customers.add_many(self.restored_customers)
        self.restored_customers = []
