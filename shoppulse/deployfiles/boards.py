"""The four dashboards (Sales; Funnel and traffic; Customer support; Pipeline health): which
panels, in which rows. A catalogue KPI without a place here still gets a panel, in a "More" row."""

from __future__ import annotations

from ..settings import Settings
from ..streams.goals import Goal, goals
from ..streams.kpis import BY_KEY, CATALOGUE
from .panels import (
    NOT_NAN,
    Board,
    Panel,
    Query,
    Row,
    histogram_quantiles,
    kpi_panel,
    kpi_query,
    quantile_panels,
    selector,
    sla_panel,
    stat,
)
from .series import CONVERSION_15M, DEAD_LETTER_GOAL, DEAD_LETTER_SHARE_5M, FRESHNESS, JOB


def _family_rest(families: tuple[str, ...], placed: set[str], gs: dict[str, Goal]) -> list[Panel]:
    """A panel for every KPI of these families not placed yet, so a new catalogue KPI always gets one."""
    return [kpi_panel(k, gs) for k in CATALOGUE if k.family in families and not k.insight and k.key not in placed]


def _placed(rows: list[Row]) -> set[str]:
    return {k for row in rows for p in row.panels for k in p.kpis}


def sales(settings: Settings, gs: dict[str, Goal]) -> Board:
    k = BY_KEY
    rows = [
        Row(
            "Now",
            [
                stat("revenue", gs, "Revenue"),
                stat("orders", gs, "Orders"),
                stat("average_order_value", gs, "AOV"),
                stat("gross_margin", gs, "Gross margin"),
                stat("refund_rate", gs, "Refund rate"),
                stat("revenue_per_visitor", gs, "Revenue per visitor"),
            ],
        ),
        Row(
            "Revenue and orders",
            [
                kpi_panel(k["revenue"], gs, title="Revenue"),
                kpi_panel(k["orders"], gs, title="Orders"),
                kpi_panel(k["average_order_value"], gs, title="Average order value"),
                kpi_panel(k["units_per_order"], gs, title="Units per order"),
                kpi_panel(k["revenue_per_visitor"], gs, title="Revenue per visitor"),
            ],
        ),
        Row(
            "Profit",
            [
                kpi_panel(k["gross_profit"], gs, title="Gross profit"),
                kpi_panel(k["gross_margin"], gs, title="Gross margin"),
            ],
        ),
        Row(
            "Refunds and cancellations",
            [
                kpi_panel(k["refunds"], gs, title="Refunds"),
                kpi_panel(k["refund_amount"], gs, title="Refund amount"),
                kpi_panel(k["refund_rate"], gs, title="Refund rate"),
                kpi_panel(k["cancellations"], gs, title="Cancellations"),
            ],
        ),
    ]
    customers = kpi_panel(
        k["new_customer_orders"],
        gs,
        title="New vs returning customer orders",
        stack=True,
        queries=[kpi_query(k["new_customer_orders"], "new"), kpi_query(k["returning_customer_orders"], "returning")],
    )
    customers.kpis = ("new_customer_orders", "returning_customer_orders")
    rows.append(
        Row("Customers", [customers, kpi_panel(k["returning_customer_rate"], gs, title="Returning customer rate")])
    )
    rest = _family_rest(("sales", "cross"), _placed(rows), gs)
    if rest:
        rows.append(Row("More", rest))
    return Board(
        "shoppulse-sales", "shoppulse / Sales", "Revenue, orders and refunds per closed window.", rows, ("currency",)
    )


def funnel(settings: Settings, gs: dict[str, Goal]) -> Board:
    k = BY_KEY
    steps = [
        ("sessions", "ended_sessions"),
        ("added to cart", "cart_sessions"),
        ("began checkout", "checkout_sessions"),
        ("purchased", "converted_sessions"),
    ]
    funnel_bar = Panel(
        key="funnel:bar",
        title="Session funnel (sessions ended in the time range)",
        kind="bargauge",
        unit="short",
        queries=[
            Query(f"sum(increase(shoppulse_{name}_total[$__range]))", label, instant=True) for label, name in steps
        ],
        description="Sessions ended in the dashboard's time range, then those with an add_to_cart, a begin_checkout and a "
        "purchase, from the session counters (counted once the sessions have ended).",
        width=8,
    )
    conversion_counters = Panel(
        key="conversion:15m",
        title="Conversion over 15 min (counters)",
        unit="percentunit",
        queries=[Query(f"{CONVERSION_15M}{NOT_NAN}", "conversion 15m")],
        goal=gs.get("conversion_rate"),
        min=0,
        max=1,
        description=f"Recording rule `{CONVERSION_15M}`: converted / ended sessions over 15 min from the counters, "
        "the same series the week-over-week alert uses.",
    )
    rows = [
        Row(
            "Now",
            [
                stat("sessions", gs, "Sessions"),
                stat("unique_visitors", gs, "Unique visitors"),
                stat("conversion_rate", gs, "Conversion"),
                stat("cart_abandonment_rate", gs, "Cart abandonment"),
                stat("checkout_abandonment_rate", gs, "Checkout abandonment"),
                stat("bounce_rate", gs, "Bounce"),
            ],
        ),
        Row(
            "Funnel",
            [
                funnel_bar,
                kpi_panel(k["conversion_rate"], gs, title="Conversion rate"),
                conversion_counters,
                kpi_panel(k["add_to_cart_rate"], gs, title="Add-to-cart rate"),
                kpi_panel(k["cart_abandonment_rate"], gs, title="Cart abandonment"),
                kpi_panel(k["checkout_abandonment_rate"], gs, title="Checkout abandonment"),
            ],
        ),
        Row(
            "Traffic",
            [
                kpi_panel(k["sessions"], gs, title="Sessions started"),
                kpi_panel(k["sessions_by_device"], gs, title="Sessions by device", stack=True),
                kpi_panel(k["sessions_by_source"], gs, title="Sessions by source", stack=True),
                kpi_panel(k["unique_visitors"], gs, title="Unique visitors"),
                kpi_panel(k["page_views"], gs, title="Page views"),
                kpi_panel(k["new_visitor_share"], gs, title="New-visitor share"),
            ],
        ),
        Row(
            "Engagement",
            [
                kpi_panel(k["bounce_rate"], gs, title="Bounce rate"),
                kpi_panel(k["pages_per_session"], gs, title="Pages per session"),
                kpi_panel(k["avg_session_duration_seconds"], gs, title="Average session duration"),
            ],
        ),
    ]
    ctr = kpi_panel(
        k["promo_ctr"],
        gs,
        title="Promo and email CTR",
        queries=[kpi_query(k["promo_ctr"], "promo"), kpi_query(k["email_ctr"], "email")],
    )
    ctr.kpis = ("promo_ctr", "email_ctr")
    events = ("newsletter_signups", "sms_signups", "unsubscribes", "chats_started", "searches", "reviews_submitted")
    signups = kpi_panel(
        k["newsletter_signups"],
        gs,
        title="Signups, unsubscribes, chats, searches, reviews",
        queries=[kpi_query(k[e], e.replace("_", " ")) for e in events],
    )
    signups.kpis = events
    rows.append(Row("Marketing", [ctr, signups]))
    rest = _family_rest(("traffic", "sessions"), _placed(rows), gs)
    if rest:
        rows.append(Row("More", rest))
    return Board(
        "shoppulse-funnel",
        "shoppulse / Funnel and traffic",
        "Sessions, the purchase funnel and engagement.",
        rows,
        ("device", "source"),
    )


def support(settings: Settings, gs: dict[str, Goal]) -> Board:
    k = BY_KEY
    overall = {"channel": "", "priority": ""}
    rows = [
        Row(
            "Now",
            [
                stat("open_tickets", gs, "Open tickets"),
                stat("backlog_tickets", gs, "Backlog"),
                stat("oldest_unanswered_ticket_age_seconds", gs, "Oldest unanswered"),
                stat("first_response_seconds", gs, "First reply p90", quantile="0.9", **overall),
                stat("sla_breach_rate", gs, "SLA breaches"),
                stat("csat", gs, "CSAT"),
            ],
        ),
        Row(
            "First reply",
            [
                *quantile_panels(k["first_response_seconds"], gs),
                histogram_quantiles(
                    "shoppulse_first_response_duration_seconds",
                    "First reply p50, p90 by channel (histogram)",
                    "first_response_seconds:histogram",
                    "channel",
                    settings,
                    gs,
                    "first_response_seconds",
                ),
                sla_panel(settings),
                kpi_panel(k["sla_breach_rate"], gs, title="SLA breach rate"),
            ],
        ),
        Row(
            "Resolution",
            [
                *quantile_panels(k["resolution_seconds"], gs),
                histogram_quantiles(
                    "shoppulse_resolution_duration_seconds",
                    "Resolution p50, p90 (histogram)",
                    "resolution_seconds:histogram",
                    None,
                    settings,
                    gs,
                    "resolution_seconds",
                ),
            ],
        ),
        Row(
            "Queue",
            [
                kpi_panel(k["open_tickets"], gs, title="Open tickets"),
                kpi_panel(k["backlog_tickets"], gs, title="Backlog (open over 24 h)"),
                kpi_panel(k["oldest_unanswered_ticket_age_seconds"], gs, title="Oldest unanswered ticket"),
                kpi_panel(k["tickets_created"], gs, title="Tickets created"),
                kpi_panel(k["tickets_created_by_channel"], gs, title="Tickets by channel", stack=True),
                kpi_panel(k["tickets_created_by_category"], gs, title="Tickets by category", stack=True),
            ],
        ),
        Row(
            "Quality",
            [
                kpi_panel(k["escalation_rate"], gs, title="Escalation rate"),
                kpi_panel(k["reopen_rate"], gs, title="Reopen rate"),
                kpi_panel(k["one_touch_rate"], gs, title="One-touch rate"),
                kpi_panel(k["csat"], gs, title="CSAT"),
                kpi_panel(k["nps"], gs, title="NPS"),
            ],
        ),
    ]
    rest = _family_rest(("support",), _placed(rows), gs)
    if rest:
        rows.append(Row("More", rest))
    return Board(
        "shoppulse-support",
        "shoppulse / Customer support",
        "First reply and resolution times, queue, quality.",
        rows,
        ("channel", "priority", "category"),
    )


def pipeline(settings: Settings, gs: dict[str, Goal]) -> Board:
    job = f'job="{JOB}"'
    up_mappings = [
        {
            "type": "value",
            "options": {
                "0": {"text": "DOWN", "color": "red", "index": 0},
                "1": {"text": "UP", "color": "green", "index": 1},
            },
        }
    ]
    rows = [
        Row(
            "Workers",
            [
                Panel(
                    "pipeline:up",
                    "Workers up",
                    [Query(f"up{{{job}}}", "{{instance}}", instant=True)],
                    "none",
                    kind="stat",
                    width=6,
                    height=4,
                    mappings=up_mappings,
                    threshold=(">=", 1),
                    description="1 when Prometheus can scrape the worker's /metrics.",
                ),
                Panel(
                    "pipeline:build",
                    "Version",
                    [Query(f"shoppulse_build_info{{{job}}}", "{{version}} {{commit}}", instant=True)],
                    "none",
                    kind="stat",
                    width=6,
                    height=4,
                    description="`shoppulse_build_info`: the version and commit each worker runs.",
                ),
                Panel(
                    "pipeline:memory",
                    "Process memory (RSS)",
                    [Query(f"process_resident_memory_bytes{{{job}}}", "{{instance}}")],
                    "bytes",
                    width=6,
                    height=8,
                    description="Resident memory of each worker process (prometheus_client's process collector).",
                ),
                Panel(
                    "pipeline:cpu",
                    "Process CPU",
                    [Query(f"rate(process_cpu_seconds_total{{{job}}}[$__rate_interval])", "{{instance}}")],
                    "percentunit",
                    width=6,
                    height=8,
                    description="CPU time per second of each worker process; 100% is one core.",
                ),
            ],
        ),
        Row(
            "Input",
            [
                Panel(
                    "pipeline:events",
                    "Events read per second by topic and outcome",
                    [
                        Query(
                            "sum by (topic, outcome) (rate(shoppulse_events_total[$__rate_interval]))",
                            "{{topic}} {{outcome}}",
                        )
                    ],
                    "cps",
                    description="Source messages read: ok, invalid, late, duplicate.",
                ),
                Panel(
                    "pipeline:late",
                    "Late and duplicate events per second",
                    [
                        Query(
                            'sum by (topic, outcome) (rate(shoppulse_events_total{outcome=~"late|duplicate"}[$__rate_interval]))',
                            "{{topic}} {{outcome}}",
                        )
                    ],
                    "cps",
                    description="Late events are dead-lettered with reason `late`; duplicates are dropped.",
                ),
                Panel(
                    "pipeline:dead_letters",
                    "Dead letters per second by reason",
                    [Query("sum by (reason) (rate(shoppulse_dead_letters_total[$__rate_interval]))", "{{reason}}")],
                    "cps",
                    description="Records written to the dead-letter topic; the records name reason, topic and offset.",
                ),
                Panel(
                    "pipeline:dead_letter_share",
                    "Dead-letter share (5 min)",
                    [Query(f"{DEAD_LETTER_SHARE_5M}{NOT_NAN}", "dead letters / events")],
                    "percentunit",
                    threshold=("<=", DEAD_LETTER_GOAL),
                    min=0,
                    description=f"Recording rule `{DEAD_LETTER_SHARE_5M}`; goal <= {DEAD_LETTER_GOAL:.0%} (the alert).",
                ),
            ],
        ),
        Row(
            "Lag and latency",
            [
                Panel(
                    "pipeline:watermark_lag",
                    "Watermark lag",
                    [Query("max by (topic) (shoppulse_watermark_lag_seconds)", "{{topic}}")],
                    "s",
                    description="Wall clock minus the event-time watermark, worst partition.",
                ),
                Panel(
                    "pipeline:consumer_lag",
                    "Consumer lag",
                    [Query("sum by (topic) (shoppulse_consumer_lag_messages)", "{{topic}}")],
                    "short",
                    description="Messages behind the log end, summed over the workers.",
                ),
                Panel(
                    "pipeline:latency",
                    "Processing latency",
                    [
                        Query(
                            "sum by (le) (rate(shoppulse_processing_latency_seconds_bucket[$__rate_interval]))",
                            "{{le}}",
                            heatmap=True,
                        )
                    ],
                    "s",
                    kind="heatmap",
                    description="Kafka record timestamp to the start of processing its batch.",
                ),
                Panel(
                    "pipeline:freshness",
                    "Data freshness per family",
                    [Query(f"time() - max by (family) ({selector(FRESHNESS, window='$window')})", "{{family}}")],
                    "s",
                    description="Age of the end of the last closed window of each family. Sessions lag by the session "
                    "timeout: their windows close once their sessions have ended.",
                ),
            ],
        ),
    ]
    return Board(
        "shoppulse-pipeline",
        "shoppulse / Pipeline health",
        "Is shoppulse itself healthy: workers, input, lag, latency, freshness.",
        rows,
    )


BOARDS = (sales, funnel, support, pipeline)


def boards(settings: Settings | None = None) -> list[Board]:
    settings = settings or Settings()
    gs = goals(settings)
    return [build(settings, gs) for build in BOARDS]
