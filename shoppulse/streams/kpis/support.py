"""Support KPIs: ticket events; durations (first reply, resolution) count in the window where
they end, and the queue (open tickets, backlog, oldest unanswered) is a snapshot at its end."""

from __future__ import annotations

from ..measures import Measures
from .compute import by_label, count, means, quantiles, ratio, ratio_value
from .model import Context, Kpi, Value

DURATION_END = "the window where the duration ends"


def _nps(m: Measures, ctx: Context) -> list[Value]:
    promoters, detractors, n = m.get("nps_promoters", 0), m.get("nps_detractors", 0), m.get("nps_responses", 0)
    return [Value("nps", 100 * (promoters - detractors) / n if n else None, {}, promoters - detractors, n)]


def _oldest_unanswered(m: Measures, ctx: Context) -> list[Value]:
    oldest = m.get("max:oldest_unanswered_age_ms")
    return [Value("oldest_unanswered_ticket_age_seconds", oldest / 1000 if oldest is not None else 0.0)]


KPIS: tuple[Kpi, ...] = (
    Kpi(
        "tickets_created",
        "support",
        "count",
        "tickets created",
        "Zendesk `Tickets created`",
        count("tickets_created", "tickets_created"),
        counters=("tickets_created",),
    ),
    Kpi(
        "tickets_created_by_channel",
        "support",
        "count",
        "tickets created by channel (top N + other)",
        "Zendesk tickets by channel",
        by_label("tickets_created_by_channel", "tickets_by_channel", "channel"),
        dims=("channel",),
    ),
    Kpi(
        "tickets_created_by_category",
        "support",
        "count",
        "tickets created by category (top N + other)",
        "Zendesk tickets by form/category",
        by_label("tickets_created_by_category", "tickets_by_category", "category"),
        dims=("category",),
    ),
    Kpi(
        "first_response_seconds",
        "support",
        "seconds",
        "created -> first public agent reply: p50 and p90 (DDSketch, `quantile` 0.5 and 0.9), overall, by channel and by priority",
        "Zendesk Explore `First reply time`",
        quantiles("first_response_seconds", "frt", "frt_sum_ms", "first_replies", ("channel", "priority")),
        dims=("quantile", "channel", "priority"),
        attribution=DURATION_END,
        counters=("first_replies",),
        goal=("<=", 3600.0),
    ),
    Kpi(
        "first_response_mean_seconds",
        "support",
        "seconds",
        "created -> first public agent reply: exact mean, overall, by channel and by priority",
        "Zendesk Explore `First reply time` (average)",
        means("first_response_mean_seconds", "frt", "frt_sum_ms", "first_replies", ("channel", "priority")),
        dims=("channel", "priority"),
        attribution=DURATION_END,
    ),
    Kpi(
        "resolution_seconds",
        "support",
        "seconds",
        "created -> solved: p50 and p90 (DDSketch, `quantile` 0.5 and 0.9)",
        "Zendesk Explore `Full resolution time`",
        quantiles("resolution_seconds", "resolution", "resolution_sum_ms", "resolutions", ()),
        dims=("quantile",),
        attribution=DURATION_END,
        counters=("solves",),
    ),
    Kpi(
        "resolution_mean_seconds",
        "support",
        "seconds",
        "created -> solved: exact mean",
        "Zendesk Explore `Full resolution time` (average)",
        means("resolution_mean_seconds", "resolution", "resolution_sum_ms", "resolutions", ()),
        attribution=DURATION_END,
    ),
    Kpi(
        "open_tickets",
        "support",
        "tickets",
        "tickets created and not solved, at the window's end",
        "Zendesk `Unsolved tickets`",
        count("open_tickets", "open_tickets"),
        attribution="a snapshot at the window's end",
    ),
    Kpi(
        "backlog_tickets",
        "support",
        "tickets",
        "open tickets older than 24 h (configurable), at the window's end",
        "Zendesk backlog age",
        count("backlog_tickets", "backlog_tickets"),
        attribution="a snapshot at the window's end",
    ),
    Kpi(
        "oldest_unanswered_ticket_age_seconds",
        "support",
        "seconds",
        "window end - creation time of the oldest open ticket without a public agent reply (0 when none)",
        "Zendesk `Requester wait time` (oldest)",
        _oldest_unanswered,
        attribution="a snapshot at the window's end",
        goal=("<=", 4 * 3600.0),
    ),
    Kpi(
        "escalation_rate",
        "support",
        "ratio",
        "escalations / tickets created",
        "Zendesk escalations",
        ratio("escalation_rate", "escalations", "tickets_created"),
        counters=("escalations",),
    ),
    Kpi(
        "reopen_rate",
        "support",
        "ratio",
        "reopens / solves",
        "Zendesk `Reopens`",
        ratio("reopen_rate", "reopens", "solves"),
        counters=("reopens",),
    ),
    Kpi(
        "one_touch_rate",
        "support",
        "ratio",
        "tickets solved with at most one public agent reply / tickets solved",
        "Zendesk `One-touch tickets`",
        ratio("one_touch_rate", "one_touch_solves", "solves"),
        counters=("one_touch_solves",),
    ),
    Kpi(
        "sla_breach_rate",
        "support",
        "ratio",
        "first replies later than the priority's target (urgent 1 h, high 4 h, normal 24 h, low 48 h) / first replies",
        "Zendesk SLA `First reply time` breaches",
        ratio("sla_breach_rate", "sla_breaches", "first_replies"),
        attribution=DURATION_END,
        counters=("sla_breaches",),
        goal=("<=", 0.1),
    ),
    Kpi(
        "csat",
        "support",
        "ratio",
        "good / (good + bad); good = score 4-5 of 5",
        "Zendesk CSAT",
        lambda m, ctx: [ratio_value("csat", m.get("csat_good", 0), m.get("csat_good", 0) + m.get("csat_bad", 0))],
        counters=("csat_good", "csat_bad"),
        goal=(">=", 0.8),
    ),
    Kpi(
        "nps",
        "support",
        "score",
        "% promoters (9-10) - % detractors (0-6)",
        "Bain NPS",
        _nps,
        counters=("nps_promoters", "nps_detractors", "nps_responses"),
    ),
)
