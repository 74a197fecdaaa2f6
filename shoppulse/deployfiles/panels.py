"""Grafana panels before layout: the model (`Query`, `Panel`, `Row`, `Board`) and the builders
of KPI panels from the catalogue and its goals.

Every KPI panel pins `window="$window"` (never summing across windows), uses the
`$datasource` variable, sets a unit and draws the KPI's goal as a threshold line.
Quotient gauges are filtered with `>= -Inf`, which drops NaN (a window with no
denominator), so such a panel shows "no data" instead of NaN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..settings import Settings
from ..streams.goals import Goal
from ..streams.kpis import BY_KEY, Kpi

NOT_NAN = " >= -Inf"  # keeps every sample but NaN

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


def thresholds(op: str, target: float) -> dict:
    """Green where the goal is met, red where it is broken."""
    below, above = (COLORS["bad"], COLORS["ok"]) if op == ">=" else (COLORS["ok"], COLORS["bad"])
    return {"mode": "absolute", "steps": [{"color": below, "value": None}, {"color": above, "value": target}]}
