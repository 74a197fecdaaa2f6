"""Traffic KPIs: clickstream events, attributed to the event's window (sessions started: to
the window of the session's first event)."""

from __future__ import annotations

from .compute import by_label, count, ratio, top_list
from .model import Kpi, Value

KPIS: tuple[Kpi, ...] = (
    Kpi(
        "sessions",
        "traffic",
        "count",
        "sessions started in the window",
        "GA4 `sessions` (30 min inactivity split)",
        count("sessions", "sessions"),
        attribution="the window of the session's first event",
        counters=("sessions",),
    ),
    Kpi(
        "sessions_by_device",
        "traffic",
        "count",
        "sessions started, by `device` (top N + other)",
        "GA4 device category",
        by_label("sessions_by_device", "sessions_by_device", "device"),
        dims=("device",),
        attribution="the window of the session's first event",
    ),
    Kpi(
        "sessions_by_source",
        "traffic",
        "count",
        "sessions started, by `source` (top N + other)",
        "GA4 session source",
        by_label("sessions_by_source", "sessions_by_source", "source"),
        dims=("source",),
        attribution="the window of the session's first event",
    ),
    Kpi(
        "unique_visitors",
        "traffic",
        "count",
        "distinct visitor_id over all events (theta sketch, exact below 65,536)",
        "GA4 `totalUsers`",
        lambda m, ctx: [Value("unique_visitors", m["visitors"].count() if "visitors" in m else 0)],
    ),
    Kpi(
        "page_views",
        "traffic",
        "count",
        "page_view + product_view events",
        "GA4 `screenPageViews`",
        count("page_views", "page_views"),
        counters=("page_views",),
    ),
    Kpi(
        "new_visitor_share",
        "traffic",
        "ratio",
        "sessions of first-time visitors / sessions (`is_new_visitor`, else first sight of visitor_id)",
        "GA4 `newUsers` / sessions",
        ratio("new_visitor_share", "new_visitor_sessions", "sessions"),
        attribution="the window of the session's first event",
        counters=("new_visitor_sessions",),
    ),
    Kpi(
        "promo_ctr",
        "traffic",
        "ratio",
        "promo_click / promo_view events",
        "GA4 promotion CTR",
        ratio("promo_ctr", "promo_clicks", "promo_views"),
        counters=("promo_clicks", "promo_views"),
    ),
    Kpi(
        "email_ctr",
        "traffic",
        "ratio",
        "email_click / email_open events",
        "email click-to-open rate",
        ratio("email_ctr", "email_clicks", "email_opens"),
        counters=("email_clicks", "email_opens"),
    ),
    *(
        Kpi(key, "traffic", "count", f"{event} events", "event count", count(key, key), counters=(key,))
        for key, event in (
            ("newsletter_signups", "newsletter_signup"),
            ("sms_signups", "sms_signup"),
            ("unsubscribes", "unsubscribe"),
            ("chats_started", "chat_start"),
            ("searches", "search"),
            ("reviews_submitted", "review_submitted"),
        )
    ),
    Kpi(
        "product_view_pairs",
        "traffic",
        "count",
        "consecutive product views within a session (top 20, 1 h)",
        "Shopify 'frequently viewed together'",
        top_list("product_view_pairs", "view_pairs"),
        insight=True,
        attribution="the window of the second view",
    ),
)
