"""Session KPIs: the outcomes of sessions, attributed to the window where the session started,
final once the session has ended."""

from __future__ import annotations

from .compute import mean_seconds, ratio, ratio_value
from .model import Counted, Kpi

SESSION_START = "the window where the session started; final once the session has ended"

KPIS: tuple[Kpi, ...] = (
    Kpi(
        "pages_per_session",
        "sessions",
        "average",
        "page views of the sessions started / those sessions",
        "GA4 `screenPageViewsPerSession`",
        ratio("pages_per_session", "session_views", "ended_sessions"),
        attribution=SESSION_START,
        counters=("session_views", "ended_sessions"),
    ),
    Kpi(
        "avg_session_duration_seconds",
        "sessions",
        "seconds",
        "mean of (last ts - first ts) over those sessions",
        "GA4 `averageSessionDuration`",
        mean_seconds("avg_session_duration_seconds", "session_duration_ms", "ended_sessions"),
        attribution=SESSION_START,
        counters=(Counted("session_duration_seconds", "session_duration_ms", scale=1000),),
    ),
    Kpi(
        "bounce_rate",
        "sessions",
        "ratio",
        "sessions not engaged / sessions; engaged = duration > 10 s, or >= 2 views, or a purchase",
        "GA4 `bounceRate` (1 - engagement rate)",
        lambda m, ctx: [
            ratio_value(
                "bounce_rate", m.get("ended_sessions", 0) - m.get("engaged_sessions", 0), m.get("ended_sessions", 0)
            )
        ],
        attribution=SESSION_START,
        counters=("engaged_sessions",),
        goal=("<=", 0.6),
    ),
    Kpi(
        "add_to_cart_rate",
        "sessions",
        "ratio",
        "sessions with add_to_cart / sessions",
        "GA4 session add-to-cart rate",
        ratio("add_to_cart_rate", "cart_sessions", "ended_sessions"),
        attribution=SESSION_START,
        counters=("cart_sessions",),
    ),
    Kpi(
        "conversion_rate",
        "sessions",
        "ratio",
        "sessions with a purchase / sessions",
        "GA4 session key-event rate (purchase); Shopify conversion rate (sessions as denominator)",
        ratio("conversion_rate", "converted_sessions", "ended_sessions"),
        attribution=SESSION_START,
        counters=("converted_sessions",),
        goal=(">=", 0.01),
    ),
    Kpi(
        "cart_abandonment_rate",
        "sessions",
        "ratio",
        "sessions with add_to_cart and no purchase / sessions with add_to_cart",
        "Baymard / Shopify cart abandonment",
        ratio("cart_abandonment_rate", "abandoned_cart_sessions", "cart_sessions"),
        attribution=SESSION_START,
        counters=("abandoned_cart_sessions",),
        goal=("<=", 0.85),
    ),
    Kpi(
        "checkout_abandonment_rate",
        "sessions",
        "ratio",
        "sessions with begin_checkout and no purchase / sessions with begin_checkout",
        "Shopify checkout abandonment",
        ratio("checkout_abandonment_rate", "abandoned_checkout_sessions", "checkout_sessions"),
        attribution=SESSION_START,
        counters=("checkout_sessions", "abandoned_checkout_sessions"),
    ),
)
