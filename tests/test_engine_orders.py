"""The orders engine: revenue, cost and profit in micro-units, first orders, cancellations, refunds."""

from __future__ import annotations

from core_events import WALL_MS, finals, item, order, persist, restored, settings

from shoppulse.streams.engines import OrdersEngine


def sales(*events, engine: OrdersEngine | None = None):
    """The first minute's sales measures once it has closed."""
    e = engine or OrdersEngine(0, settings())
    e.process([*events, order("order_cancelled", 500, customer=None, order_id="closer")], WALL_MS)
    return finals(e.take_outbox(), "sales")[0]


def test_revenue_cost_and_profit_in_micros():
    # 2 x 10.00 (cost 6.00) + 1 x 5.50 (cost 2.25) - 1.50 discount = 24.00 revenue, 14.25 cost.
    placed = order(
        "order_placed", 1, currency="EUR", discount=1.5, items=[item("a", 2, 10.0, 6.0), item("b", 1, 5.5, 2.25)]
    )
    m = sales(placed)
    assert (m["orders"], m["units"], m["orders_by_currency"]) == (1, 3, {"EUR": 1})
    assert m["revenue_micros"] == {"EUR": 24_000_000}
    assert m["costed_revenue_micros"] == {"EUR": 24_000_000}
    assert m["cost_micros"] == {"EUR": 14_250_000}
    assert m["profit_micros"] == {"EUR": 9_750_000}


def test_an_order_with_an_uncosted_item_counts_revenue_but_no_margin():
    m = sales(order("order_placed", 1, currency="USD", items=[item("a", 1, 3.0, 1.0), item("b", 1, 2.0)]))
    assert m["revenue_micros"] == {"USD": 5_000_000}
    assert "cost_micros" not in m and "costed_revenue_micros" not in m and "profit_micros" not in m


def test_first_and_returning_customers_and_guests():
    m = sales(
        order("order_placed", 1, customer="c1", order_id="o1", items=[item("a", 1, 1.0)]),  # first
        order("order_placed", 2, customer="c1", order_id="o2", items=[item("a", 1, 1.0)]),  # returning
        order("order_placed", 3, customer=None, order_id="o3", items=[item("a", 1, 1.0)]),  # a guest: neither
        order("order_placed", 4, customer="c2", order_id="o4", is_first_order=False, items=[item("a", 1, 1.0)]),
    )
    assert m["orders"] == 4
    assert (m["new_customer_orders"], m["returning_customer_orders"]) == (1, 2)
    assert m["orders_by_currency"] == {"unknown": 4}


def test_cancellations_and_refunds_with_and_without_an_amount():
    m = sales(
        order("order_cancelled", 1, order_id="o1"),
        order("order_refunded", 2, order_id="o2", currency="EUR", refund_amount=4.2, items=[item("a", 1, 9.0)]),
        order("order_refunded", 3, order_id="o3", currency="EUR", items=[item("a", 2, 3.1)]),  # the items: 6.20
    )
    # The closing event of `sales` is one more cancellation, in a later window.
    assert (m["cancellations"], m["refunds"]) == (1, 2)
    assert m["refund_micros"] == {"EUR": 10_400_000}


def test_insight_lists_weigh_products_and_pairs_in_the_largest_window():
    e = OrdersEngine(0, settings())
    placed = order("order_placed", 1, items=[item("b", 2, 1.5), item("a", 1, 4.0)])
    e.process([placed, order("order_cancelled", 500, customer=None, order_id="closer")], WALL_MS)
    out = e.take_outbox()
    five = finals(out, "sales", 300_000)[0]
    assert five["product_revenue_micros"].top(5) == [("a", 4_000_000), ("b", 3_000_000)]
    assert five["product_units"].top(5) == [("b", 2), ("a", 1)]
    assert five["product_pairs"].top(5) == [("a+b", 1)]
    assert "product_pairs" not in finals(out, "sales")[0], "the 1 minute window keeps no insight list"


def test_restore_keeps_the_customers_seen():
    original, store = OrdersEngine(0, settings()), {}
    original.process([order("order_placed", 1, customer="c1", items=[item("a", 1, 1.0)])], WALL_MS)
    persist(original, store)
    copy = restored(original, store)
    assert "c1" in copy.seen_customers and "c2" not in copy.seen_customers
    m = sales(order("order_placed", 2, customer="c1", order_id="o2", items=[item("a", 1, 1.0)]), engine=copy)
    assert (m["new_customer_orders"], m["returning_customer_orders"]) == (1, 1)  # the first from before the restore
