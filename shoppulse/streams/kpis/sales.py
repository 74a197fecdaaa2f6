"""Sales KPIs: order events, attributed to the event's window."""

from __future__ import annotations

from ..measures import MICROS, Measures
from .compute import count, money_by_currency, money_ratio_by_currency, ratio, ratio_value, top_list
from .model import Context, Counted, Kpi, Value


def _gross_margin(m: Measures, ctx: Context) -> list[Value]:
    """Per currency with revenue; None where no order of that currency was fully costed."""
    profits, costed = m.get("profit_micros", {}), m.get("costed_revenue_micros", {})
    out = []
    for currency in sorted(m.get("revenue_micros", {})):
        profit, revenue = profits.get(currency, 0) / MICROS, costed.get(currency, 0) / MICROS
        out.append(
            Value("gross_margin", profit / revenue if revenue else None, {"currency": currency}, profit, revenue)
        )
    return out


KPIS: tuple[Kpi, ...] = (
    Kpi(
        "orders", "sales", "count", "orders placed", "Shopify `orders`", count("orders", "orders"), counters=("orders",)
    ),
    Kpi(
        "revenue",
        "sales",
        "currency",
        "sum of quantity x unit_price - discount (no tax, no shipping), per currency",
        "Shopify net sales before returns",
        money_by_currency("revenue", "revenue_micros"),
        dims=("currency",),
        money_sum=True,
        counters=(Counted("revenue", "revenue_micros", "currency", MICROS),),
    ),
    Kpi(
        "average_order_value",
        "sales",
        "currency",
        "revenue / orders, per currency",
        "Shopify AOV",
        money_ratio_by_currency("average_order_value", "revenue_micros", "orders_by_currency"),
        dims=("currency",),
        counters=(Counted("orders_by_currency", "orders_by_currency", "currency"),),
    ),
    Kpi(
        "units_per_order",
        "sales",
        "average",
        "units / orders",
        "Shopify units per transaction",
        ratio("units_per_order", "units", "orders"),
        counters=("units",),
    ),
    Kpi(
        "gross_profit",
        "sales",
        "currency",
        "revenue - cost over orders where every item has a unit_cost",
        "Shopify gross profit",
        money_by_currency("gross_profit", "profit_micros"),
        dims=("currency",),
        money_sum=True,
        # Profit can be negative, and a counter only goes up: export its parts instead.
        counters=(
            Counted("costed_revenue", "costed_revenue_micros", "currency", MICROS),
            Counted("cost", "cost_micros", "currency", MICROS),
        ),
    ),
    Kpi(
        "gross_margin",
        "sales",
        "ratio",
        "gross_profit / revenue of those orders",
        "Shopify gross margin",
        _gross_margin,
        dims=("currency",),
    ),
    Kpi(
        "cancellations",
        "sales",
        "count",
        "order_cancelled events",
        "Shopify cancelled orders",
        count("cancellations", "cancellations"),
        counters=("cancellations",),
    ),
    Kpi(
        "refunds",
        "sales",
        "count",
        "order_refunded events",
        "Shopify returns",
        count("refunds", "refunds"),
        counters=("refunds",),
    ),
    Kpi(
        "refund_amount",
        "sales",
        "currency",
        "sum of refund_amount, per currency",
        "Shopify returns amount",
        money_by_currency("refund_amount", "refund_micros"),
        dims=("currency",),
        money_sum=True,
        counters=(Counted("refund_amount", "refund_micros", "currency", MICROS),),
    ),
    Kpi(
        "refund_rate",
        "sales",
        "ratio",
        "refunds / orders",
        "Shopify return rate",
        ratio("refund_rate", "refunds", "orders"),
    ),
    Kpi(
        "new_customer_orders",
        "sales",
        "count",
        "orders of first-time customers (`is_first_order`, else first sight)",
        "Shopify first-time customers",
        count("new_customer_orders", "new_customer_orders"),
        counters=("new_customer_orders",),
    ),
    Kpi(
        "returning_customer_orders",
        "sales",
        "count",
        "orders of returning customers",
        "Shopify returning customers",
        count("returning_customer_orders", "returning_customer_orders"),
        counters=("returning_customer_orders",),
    ),
    Kpi(
        "returning_customer_rate",
        "sales",
        "ratio",
        "returning / (returning + new)",
        "Shopify returning customer rate",
        lambda m, ctx: [
            ratio_value(
                "returning_customer_rate",
                m.get("returning_customer_orders", 0),
                m.get("returning_customer_orders", 0) + m.get("new_customer_orders", 0),
            )
        ],
    ),
    Kpi(
        "top_products",
        "sales",
        "currency",
        "products by revenue (top 20, 1 h)",
        "Shopify top products",
        top_list("top_products", "product_revenue_micros", MICROS),
        insight=True,
    ),
    Kpi(
        "product_affinity",
        "sales",
        "count",
        "product pairs bought in the same order (top 20, 1 h)",
        "market-basket co-occurrence",
        top_list("product_affinity", "product_pairs"),
        insight=True,
    ),
)
