"""Grafana dashboards, generated from the KPI catalogue and its goals.

Four dashboards (Sales; Funnel and traffic; Customer support; Pipeline health) are written
as Grafana 11.0 dashboard JSON into `grafana/dashboards/`; tests/test_dashboards.py keeps
the checked-in files equal to this module's output, validates them against Grafana's own
schema and lints them, and tests/test_prometheus_live.py runs every query against a real
Prometheus scraping a real worker. Regenerate after changing the catalogue or a goal:

    python -m shoppulse.outputs.dashboards grafana/dashboards

Every KPI panel pins `window="$window"` (never summing across windows), uses the
`$datasource` variable, sets a unit and draws the KPI's goal as a threshold line.
Quotient gauges are filtered with `>= -Inf`, which drops NaN (a window with no
denominator), so such a panel shows "no data" instead of NaN.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import apply_overrides, env_overrides
from ..settings import Settings, window_label
from ..streams.goals import Goal, goals
from ..streams.kpis import BY_KEY, CATALOGUE, Kpi

GRAFANA_VERSION = "11.0.0"  # docker-compose.yml's grafana/grafana image; grafana/schema/ is for this version
SCHEMA_VERSION = 39  # the dashboard JSON schemaVersion Grafana 11.0 writes
JOB = "shoppulse"  # the Prometheus scrape job of the workers
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
DATASOURCE_UID = "shoppulse-prometheus"  # grafana/provisioning/datasources/prometheus.yml
FRESHNESS = "shoppulse_last_closed_window_end_timestamp_seconds"
NOT_NAN = " >= -Inf"  # keeps every sample but NaN

# Recording rules (deploy/prometheus/rules.yml, shoppulse/outputs/alerts.py) that panels share with alerts.
CONVERSION_15M = "job:shoppulse_conversion:ratio_rate15m"
DEAD_LETTER_SHARE_5M = "job:shoppulse_dead_letters:ratio_rate5m"
DEAD_LETTER_GOAL = 0.01  # share of the events read that may go to the dead-letter topic

# Grafana's currency units, for the ISO codes it knows; other currencies show plain numbers.
CURRENCY_UNITS = {c: f"currency{c}" for c in ("USD", "EUR", "GBP", "JPY", "CHF", "SEK", "NOK", "DKK", "PLN", "BRL")}
UNITS = {
    "ratio": "percentunit",
    "seconds": "s",
    "count": "short",
    "tickets": "short",
    "average": "short",
    "score": "none",
    "currency": "none",
}
COLORS = {"ok": "green", "bad": "red"}


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False
    heatmap: bool = False


@dataclass
class Panel:
    """One panel before layout: what it shows, for which KPIs, with which goal line."""

    key: str  # stable name, e.g. "conversion_rate" or "pipeline:freshness"; alert links use it
    title: str
    queries: list[Query]
    unit: str
    kind: str = "timeseries"  # timeseries | stat | bargauge | heatmap
    kpis: tuple[str, ...] = ()  # catalogue KPIs this panel shows
    goal: Goal | None = None
    description: str = ""
    width: int = 8
    height: int = 8
    interval: str | None = None  # minimum $__interval (histogram quantiles need a few minutes of data)
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    threshold: tuple[str, float] | None = None  # (">=" | "<=", target) for panels without a catalogue goal
    overrides: list[dict] = field(default_factory=list)
    mappings: list[dict] = field(default_factory=list)
    stack: bool = False


@dataclass
class Row:
    title: str
    panels: list[Panel]


@dataclass
class Board:
    uid: str
    title: str
    description: str
    rows: list[Row]
    variables: tuple[str, ...] = ()  # label-value variables, in order

    @property
    def file(self) -> str:
        return self.uid.removeprefix("shoppulse-") + ".json"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


# ------------------------------------------------------------------ queries


def selector(metric: str, **matchers: str) -> str:
    """`metric{a="x", b=~"y"}`: a value starting with `~` is a regex match, with `!` a negative one."""
    parts = []
    for label, value in matchers.items():
        op = "="
        if value.startswith("~"):
            op, value = "=~", value[1:]
        elif value.startswith("!"):
            op, value = "!=", value[1:]
        parts.append(f'{label}{op}"{value}"')
    return f"{metric}{{{', '.join(parts)}}}" if parts else metric


def may_be_nan(kpi: Kpi) -> bool:
    """Quotients have no value without a denominator; counts, money sums and snapshots always have one."""
    return not (kpi.unit in ("count", "tickets") or kpi.money_sum)


def kpi_query(kpi: Kpi, legend: str | None = None, instant: bool = False, where: dict[str, str] | None = None) -> Query:
    """The KPI's gauge for the selected window; label dimensions follow their dashboard variable."""
    labels = {"window": "$window"}
    for dim in kpi.dims:
        if dim != "quantile":
            labels[dim] = f"~${dim}"
    labels.update(where or {})
    labels = {k: v for k, v in labels.items() if v is not None}
    shown = [d for d in kpi.dims if labels.get(d, "").startswith("~")]
    if legend is None:
        legend = " ".join(f"{{{{{d}}}}}" for d in shown) or kpi.key
    return Query(selector(kpi.metric, **labels) + (NOT_NAN if may_be_nan(kpi) else ""), legend, instant)


def currency_overrides() -> list[dict]:
    return [
        {"matcher": {"id": "byName", "options": code}, "properties": [{"id": "unit", "value": unit}]}
        for code, unit in CURRENCY_UNITS.items()
    ]


def describe(kpi: Kpi, goal: Goal | None) -> str:
    text = f"{kpi.formula}. Source definition: {kpi.source}. Attributed to {kpi.attribution}."
    if goal is not None:
        text += f" Goal: {goal.text} (the threshold line)."
    return text + f" Gauge `{kpi.metric}`, last closed window of the selected size."


def kpi_panel(
    kpi: Kpi,
    gs: dict[str, Goal],
    *,
    title: str | None = None,
    queries: list[Query] | None = None,
    kind: str = "timeseries",
    key: str | None = None,
    **options: Any,
) -> Panel:
    goal = gs.get(kpi.key)
    panel = Panel(
        key=key or kpi.key,
        title=title or kpi.key.replace("_", " ").capitalize(),
        queries=queries or [kpi_query(kpi, instant=kind != "timeseries")],
        unit=UNITS[kpi.unit],
        kind=kind,
        kpis=(kpi.key,),
        goal=goal,
        description=describe(kpi, goal),
        **options,
    )
    if kpi.unit == "currency":
        panel.overrides = currency_overrides()
        panel.decimals = 2
    if kpi.unit == "average":
        panel.decimals = 2
    if kpi.unit == "score":
        panel.min, panel.max = -100, 100
    elif kpi.unit == "ratio" and kpi.key != "gross_margin":
        panel.min, panel.max = 0, 1
    return panel


def stat(kpi_key: str, gs: dict[str, Goal], title: str | None = None, **matchers: str) -> Panel:
    kpi = BY_KEY[kpi_key]
    panel = kpi_panel(
        kpi,
        gs,
        title=title,
        kind="stat",
        key=f"stat:{kpi_key}",
        queries=[kpi_query(kpi, instant=True, where=matchers)],
        width=4,
        height=4,
    )
    panel.min = panel.max = None
    return panel


def quantile_panels(kpi: Kpi, gs: dict[str, Goal]) -> list[Panel]:
    """A quantile KPI (quantile label) and its mean (a KPI of its own): overall, by each breakdown."""
    mean = BY_KEY[kpi.key.removesuffix("_seconds") + "_mean_seconds"]
    breakdowns = [d for d in kpi.dims if d != "quantile"]
    overall = {d: "" for d in breakdowns}
    name = kpi.key.removesuffix("_seconds").replace("_", " ")
    panels = [
        kpi_panel(
            kpi,
            gs,
            title=f"{name.capitalize()}: window p50, p90 and mean",
            queries=[kpi_query(kpi, "p{{quantile}}", where=overall), kpi_query(mean, "mean", where=overall)],
        )
    ]
    panels[0].kpis = (kpi.key, mean.key)
    panels[0].description += f" The mean is `{mean.metric}`."
    for dim in breakdowns:
        others = {d: "" for d in breakdowns if d != dim}
        panel = kpi_panel(
            kpi,
            gs,
            key=f"{kpi.key}:{dim}",
            title=f"{name.capitalize()} p90 by {dim} (window)",
            queries=[
                kpi_query(kpi, f"p90 {{{{{dim}}}}}", where={"quantile": "0.9", dim: f"~${dim}", **others}),
                kpi_query(mean, f"mean {{{{{dim}}}}}", where={dim: f"~${dim}", **others}),
            ],
        )
        panel.kpis = (kpi.key, mean.key)
        panels.append(panel)
    return panels


def histogram_quantiles(
    metric: str, title: str, key: str, by: str | None, settings: Settings, gs: dict[str, Goal], kpi_key: str
) -> Panel:
    """p50 and p90 over the dashboard's rate interval from a duration histogram, by one label."""
    group = f"le, {by}" if by else "le"
    match = {by: f"~${by}"} if by else {}
    legend = f" {{{{{by}}}}}" if by else ""
    queries = [
        Query(
            f"histogram_quantile({q}, sum by ({group}) (rate({selector(metric + '_bucket', **match)}[$__rate_interval])))"
            + NOT_NAN,
            f"p{int(q * 100)}{legend}",
        )
        for q in (0.5, 0.9)
    ]
    goal = gs.get(kpi_key)
    return Panel(
        key=key,
        title=title,
        queries=queries,
        unit="s",
        goal=goal,
        interval="5m",
        description=(
            f"Quantiles of `{metric}` (observed when the reply or solve is processed) over the "
            "rate interval; at least 5 minutes of data per point." + (f" Goal: {goal.text}." if goal else "")
        ),
    )


def sla_panel(settings: Settings) -> Panel:
    """First reply p90 per priority from the histogram, each against its own SLA target."""
    metric = "shoppulse_first_response_duration_seconds_bucket"
    queries, overrides = [], []
    for priority, target in sorted(settings.sla_first_reply_seconds.items(), key=lambda kv: kv[1]):
        inner = f"sum by (le) (rate({selector(metric, priority=priority)}[$__rate_interval]))"
        queries.append(Query(f"histogram_quantile(0.9, {inner}){NOT_NAN}", f"p90 {priority}"))
        overrides.append(
            {
                "matcher": {"id": "byName", "options": f"p90 {priority}"},
                "properties": [
                    {"id": "thresholds", "value": thresholds("<=", target)},
                    {"id": "custom.thresholdsStyle", "value": {"mode": "dashed"}},
                ],
            }
        )
    targets = ", ".join(f"{p} {int(t // 3600)} h" for p, t in settings.sla_first_reply_seconds.items())
    return Panel(
        key="first_response_seconds:sla",
        title="First reply p90 by priority vs SLA (histogram)",
        queries=queries,
        unit="s",
        interval="5m",
        overrides=overrides,
        description=f"p90 first reply time per priority, each line against its SLA target ({targets}).",
    )


# ------------------------------------------------------------------ the four dashboards


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


# ------------------------------------------------------------------ JSON


def thresholds(op: str, target: float) -> dict:
    """Green where the goal is met, red where it is broken."""
    below, above = (COLORS["bad"], COLORS["ok"]) if op == ">=" else (COLORS["ok"], COLORS["bad"])
    return {"mode": "absolute", "steps": [{"color": below, "value": None}, {"color": above, "value": target}]}


def _reduce() -> dict:
    return {"calcs": ["lastNotNull"], "fields": "", "values": False}


def _options(kind: str) -> dict:
    if kind == "stat":
        return {
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": _reduce(),
            "showPercentChange": False,
            "textMode": "auto",
            "wideLayout": True,
        }
    if kind == "bargauge":
        return {
            "displayMode": "gradient",
            "maxVizHeight": 300,
            "minVizHeight": 16,
            "minVizWidth": 8,
            "namePlacement": "auto",
            "orientation": "horizontal",
            "reduceOptions": _reduce(),
            "showUnfilled": True,
            "sizing": "auto",
            "valueMode": "color",
        }
    if kind == "heatmap":
        return {
            "calculate": False,
            "cellGap": 1,
            "color": {
                "exponent": 0.5,
                "fill": "dark-orange",
                "mode": "scheme",
                "reverse": False,
                "scale": "exponential",
                "scheme": "Oranges",
                "steps": 64,
            },
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-9},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "showValue": "auto",
            "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": False},
            "yAxis": {"axisPlacement": "left", "reverse": False, "unit": "s"},
        }
    return {
        "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def _custom(panel: Panel, line: bool) -> dict:
    if panel.kind == "heatmap":
        return {"hideFrom": {"legend": False, "tooltip": False, "viz": False}, "scaleDistribution": {"type": "linear"}}
    if panel.kind != "timeseries":
        return {}
    return {
        "drawStyle": "line",
        "lineInterpolation": "stepAfter",
        "lineWidth": 1,
        "fillOpacity": 10 if not panel.stack else 40,
        "showPoints": "never",
        "spanNulls": False,
        "axisSoftMin": 0,
        "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "line" if line else "off"},
    }


def _target(query: Query, ref: str) -> dict:
    target: dict[str, Any] = {
        "datasource": DATASOURCE,
        "expr": query.expr,
        "refId": ref,
        "legendFormat": query.legend or "__auto",
        "range": not query.instant,
        "instant": query.instant,
        "editorMode": "code",
    }
    if query.heatmap:
        target["format"] = "heatmap"
    return target


def panel_json(panel: Panel, pid: int, x: int, y: int) -> dict:
    target = (panel.goal.op, panel.goal.target) if panel.goal else panel.threshold
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "noValue": "no data",
        "mappings": [
            {"type": "special", "options": {"match": "nan", "result": {"text": "no data", "index": 0}}},
            *panel.mappings,
        ],
        "thresholds": thresholds(*target)
        if target
        else {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
        "color": {"mode": "thresholds" if panel.kind in ("stat", "bargauge") and target else "palette-classic"},
        "custom": _custom(panel, target is not None),
    }
    for name in ("min", "max", "decimals"):
        if getattr(panel, name) is not None:
            defaults[name] = getattr(panel, name)
    out: dict[str, Any] = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "pluginVersion": GRAFANA_VERSION,
        "fieldConfig": {"defaults": defaults, "overrides": panel.overrides},
        "options": _options(panel.kind),
        "targets": [_target(q, chr(ord("A") + i)) for i, q in enumerate(panel.queries)],
    }
    if panel.interval:
        out["interval"] = panel.interval
    return out


def _variables(board: Board, settings: Settings) -> list[dict]:
    windows = [window_label(s) for s in settings.windows_seconds]
    default = "5m" if "5m" in windows else windows[0]
    out: list[dict] = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {"text": "Prometheus", "value": DATASOURCE_UID},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
            "includeAll": False,
            "multi": False,
            "skipUrlSync": False,
        },
        {
            "name": "window",
            "label": "Window",
            "type": "custom",
            "query": ",".join(windows),
            "description": "Window size of the KPI gauges: each panel shows the last closed window of this size.",
            "current": {"text": default, "value": default},
            "hide": 0,
            "includeAll": False,
            "multi": False,
            "options": [{"text": w, "value": w, "selected": w == default} for w in windows],
            "skipUrlSync": False,
        },
    ]
    for dim in board.variables:
        source = next(k for k in CATALOGUE if dim in k.dims and not k.insight)
        query = f"label_values({selector(source.metric, window='$window', **{dim: '!'})}, {dim})"
        out.append(
            {
                "name": dim,
                "label": dim.capitalize(),
                "type": "query",
                "datasource": DATASOURCE,
                "query": query,
                "refresh": 2,
                "sort": 1,
                "regex": "",
                "hide": 0,
                "multi": True,
                "includeAll": True,
                "allValue": ".+",
                "current": {"text": ["All"], "value": ["$__all"]},
                "options": [],
                "skipUrlSync": False,
            }
        )
    return out


def annotation_list() -> dict:
    grafana = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    alerts = {
        "name": "Alerts firing",
        "datasource": DATASOURCE,
        "enable": True,
        "iconColor": "red",
        "target": {"expr": 'ALERTS{alertstate="firing", alertname=~"Shoppulse.+"}', "refId": "Anno", "interval": "1m"},
        "titleFormat": "{{alertname}}",
        "tagKeys": "severity,kpi,family",
        "textFormat": "{{alertname}} firing",
        "useValueForTime": False,
    }
    deploys = {
        "name": "Deploys",
        "datasource": DATASOURCE,
        "enable": True,
        "iconColor": "blue",
        "target": {
            "expr": f'shoppulse_build_info{{job="{JOB}"}} unless shoppulse_build_info{{job="{JOB}"}} offset 10m',
            "refId": "Deploys",
            "interval": "1m",
        },
        "titleFormat": "deploy {{version}}",
        "tagKeys": "version,commit,instance",
        "textFormat": "{{instance}} runs {{version}} ({{commit}})",
        "useValueForTime": False,
    }
    return {"list": [grafana, alerts, deploys]}


def dashboard_json(board: Board, settings: Settings) -> dict:
    panels: list[dict] = []
    pid, y = 1, 0
    for row in board.rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            }
        )
        pid, y, x, row_height = pid + 1, y + 1, 0, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(panel_json(panel, pid, x, y))
            pid, x, row_height = pid + 1, x + panel.width, max(row_height, panel.height)
        y += row_height
    return {
        "uid": board.uid,
        "title": board.title,
        "description": board.description,
        "tags": ["shoppulse"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m"]},
        "links": [
            {
                "title": "shoppulse dashboards",
                "type": "dashboards",
                "tags": ["shoppulse"],
                "asDropdown": True,
                "icon": "external link",
                "includeVars": False,
                "keepTime": True,
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "annotations": annotation_list(),
        "templating": {"list": _variables(board, settings)},
        "panels": panels,
    }


def render(settings: Settings | None = None) -> dict[str, str]:
    """File name -> dashboard JSON text, for every dashboard."""
    settings = settings or Settings()
    return {b.file: json.dumps(dashboard_json(b, settings), indent=2, sort_keys=False) + "\n" for b in boards(settings)}


def panel_urls(grafana_url: str, settings: Settings | None = None) -> dict[str, str]:
    """Panel key (a KPI key or "pipeline:…") -> a link to that panel viewed alone on its dashboard."""
    settings = settings or Settings()
    urls: dict[str, str] = {}
    for board in boards(settings):
        pid = 1  # as dashboard_json numbers them: each row, then its panels
        for row in board.rows:
            pid += 1
            for panel in row.panels:
                urls.setdefault(panel.key, f"{grafana_url.rstrip('/')}/d/{board.uid}/{board.slug}?viewPanel={pid}")
                pid += 1
    return urls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shoppulse.outputs.dashboards",
        description="write the Grafana dashboards (JSON) generated from the KPI catalogue",
    )
    parser.add_argument("folder", help="where to write them, e.g. grafana/dashboards")
    args = parser.parse_args(argv)
    settings = apply_overrides(Settings(), env_overrides(dict(os.environ)), "environment")
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in render(settings).items():
        (folder / name).write_text(text)
        print(f"wrote {folder / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
