"""The live view of `shoppulse demo`: a pure model fed by kpi-results records, /metrics
scrapes and Prometheus alerts, and two renderings of it (a rich dashboard for a terminal,
one text line per closed window otherwise)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group, JustifyMethod, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..streams.goals import Goal, format_value
from ..streams.kpis import BY_KEY, FAMILIES

SPARK = "▁▂▃▄▅▆▇█"

# (panel, label, kpi, dimensions) in display order; `None` dims = every value (per currency).
PANELS: tuple[tuple[str, tuple[tuple[str, str, dict | None], ...]], ...] = (
    (
        "Funnel",
        (
            ("sessions", "sessions", {}),
            ("conversion", "conversion_rate", {}),
            ("cart abandonment", "cart_abandonment_rate", {}),
            ("bounce", "bounce_rate", {}),
        ),
    ),
    ("Sales", (("revenue", "revenue", None), ("orders", "orders", {}), ("AOV", "average_order_value", None))),
    (
        "Support",
        (
            ("tickets created", "tickets_created", {}),
            ("FRT p50", "first_response_seconds", {"quantile": "0.5"}),
            ("FRT p90", "first_response_seconds", {"quantile": "0.9"}),
            ("open tickets", "open_tickets", {}),
            ("oldest unanswered", "oldest_unanswered_ticket_age_seconds", {}),
            ("CSAT", "csat", {}),
            ("NPS", "nps", {}),
        ),
    ),
)


@dataclass
class Window:
    start: str
    values: dict[tuple[str, frozenset], float | None] = field(default_factory=dict)
    families: set[str] = field(default_factory=set)  # families whose final records arrived
    first_final_at: float = 0.0

    def get(self, kpi: str, dims: dict) -> float | None:
        return self.values.get((kpi, frozenset(dims.items())))

    def per_label(self, kpi: str, label: str) -> dict[str, float | None]:
        return {
            dict(d)[label]: v
            for (k, d), v in sorted(self.values.items(), key=lambda kv: sorted(kv[0][1]))
            if k == kpi and label in dict(d)
        }


@dataclass
class Health:
    events_per_second: float = 0.0
    dead_letters: float = 0.0
    late: float = 0.0
    watermark_lag_seconds: float | None = None
    _last: tuple[float, float] | None = None  # (time, ok events total)

    def on_scrape(self, text: str, now: float) -> None:
        ok = late = dead = 0.0
        lags = []
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "shoppulse_events_total":
                    if sample.labels.get("outcome") == "ok":
                        ok += sample.value
                    elif sample.labels.get("outcome") == "late":
                        late += sample.value
                elif sample.name == "shoppulse_dead_letters_total":
                    dead += sample.value
                elif sample.name == "shoppulse_watermark_lag_seconds":
                    lags.append(sample.value)
        if self._last is not None and now > self._last[0]:
            self.events_per_second = max(0.0, (ok - self._last[1]) / (now - self._last[0]))
        self._last = (now, ok)
        self.late, self.dead_letters = late, dead
        self.watermark_lag_seconds = max(lags) if lags else None


class Board:
    """Final KPI values of the last closed windows of one size, plus pipeline health."""

    def __init__(self, goals: dict[str, Goal], window: str = "1m", keep: int = 20, complete_after_s: float = 180.0):
        self.goals = goals
        self.window = window
        self.keep = keep
        self.complete_after_s = complete_after_s
        self.windows: dict[str, Window] = {}
        self.printed: set[str] = set()
        self.health = Health()
        self.alerts: list[str] | None = None  # None: no Prometheus

    def on_record(self, record: dict, now: float) -> None:
        if not record.get("final") or record.get("window") != self.window:
            return
        kpi = BY_KEY.get(record.get("kpi", ""))
        if kpi is None or kpi.insight:
            return
        start = record["window_start"]
        if start in self.printed and start not in self.windows:
            return  # an old window, already dropped
        window = self.windows.get(start)
        if window is None:
            window = self.windows[start] = Window(start, first_final_at=now)
        window.values[(kpi.key, frozenset((record.get("dimensions") or {}).items()))] = record.get("value")
        if kpi.family in FAMILIES:
            window.families.add(kpi.family)
        for old in sorted(self.windows)[: -self.keep]:
            del self.windows[old]

    def complete(self, now: float) -> list[Window]:
        """Windows not yet reported whose four families are final (or that waited long enough)."""
        done = []
        for start in sorted(self.windows):
            window = self.windows[start]
            if start in self.printed:
                continue
            if window.families >= set(FAMILIES) or now - window.first_final_at > self.complete_after_s:
                self.printed.add(start)
                done.append(window)
        return done

    def closed(self) -> list[Window]:
        return [self.windows[s] for s in sorted(self.windows) if s in self.printed]

    # ------------------------------------------------------------ text

    def line(self, window: Window, scenario: str) -> str:
        """One line per closed window, for logs and pipes."""
        parts = [f"{window.start[:19]}Z {self.window}"]
        for label, kpi, dims in (
            ("sessions", "sessions", {}),
            ("conversion", "conversion_rate", {}),
            ("cart_abandonment", "cart_abandonment_rate", {}),
            ("bounce", "bounce_rate", {}),
            ("orders", "orders", {}),
            ("tickets", "tickets_created", {}),
            ("frt_p90", "first_response_seconds", {"quantile": "0.9"}),
            ("open_tickets", "open_tickets", {}),
        ):
            parts.append(f"{label}={format_value(kpi, window.get(kpi, dims))}")
        revenue = window.per_label("revenue", "currency")
        parts.append("revenue=" + (",".join(f"{c} {v:.2f}" for c, v in revenue.items()) or "0"))
        parts.append(f"scenario={scenario}")
        return " ".join(parts)

    # ------------------------------------------------------------ rich

    def render(self, header: str, scenario: str, keys: str) -> Group:
        closed = self.closed()
        latest = closed[-1] if closed else None
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        panels = [self._panel(title, rows, closed) for title, rows in PANELS] + [self._health_panel()]
        grid.add_row(panels[0], panels[1])
        grid.add_row(panels[2], panels[3])
        title = Text.assemble((" shoppulse demo ", "bold white on blue"), "  ", header)
        status = Text.assemble(
            ("scenario: ", "dim"),
            (scenario, "bold yellow" if scenario != "normal" else "bold green"),
            ("   last closed window: ", "dim"),
            latest.start[:19] + "Z" if latest else "waiting…",
            ("   ", ""),
            (keys, "dim"),
        )
        parts: list[RenderableType] = [title, status, grid]
        if self.alerts is not None:
            body = Text("\n".join(self.alerts), style="bold red") if self.alerts else Text("none firing", style="green")
            parts.append(Panel(body, title="Prometheus alerts", border_style="red" if self.alerts else "green"))
        return Group(*parts)

    def _panel(self, title: str, rows, closed: list[Window]) -> Panel:
        table = Table(expand=True, box=None, show_header=True, header_style="dim")
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("KPI", "left"),
            (f"last {self.window}", "right"),
            ("goal", "right"),
            ("trend", "left"),
        )
        for column, justify in columns:
            table.add_column(column, justify=justify, no_wrap=True)
        latest = closed[-1] if closed else None
        for label, kpi, dims in rows:
            goal = self.goals.get(kpi)
            if goal and dims is not None and not goal.applies_to(dims):
                goal = None  # e.g. the first-response goal is on p90, not on the p50 row
            if dims is None:  # one row per currency
                values = latest.per_label(kpi, "currency") if latest else {}
                for currency, value in values.items() or [("", None)]:
                    history = [w.per_label(kpi, "currency").get(currency) for w in closed]
                    table.add_row(
                        f"{label} {currency}".strip(),
                        self._cell(kpi, value, goal),
                        goal.text if goal else "",
                        sparkline(history),
                    )
                continue
            value = latest.get(kpi, dims) if latest else None
            table.add_row(
                label,
                self._cell(kpi, value, goal),
                goal.text if goal else "",
                sparkline([w.get(kpi, dims) for w in closed]),
            )
        return Panel(table, title=title)

    @staticmethod
    def _cell(kpi: str, value: float | None, goal: Goal | None) -> Text:
        met = goal.met(value) if goal else None
        style = "bold red" if met is False else "green" if met else ""
        return Text(format_value(kpi, value), style=style)

    def _health_panel(self) -> Panel:
        h = self.health
        table = Table(expand=True, box=None, show_header=False)
        table.add_column()
        table.add_column(justify="right")
        lag = "n/a" if h.watermark_lag_seconds is None else f"{h.watermark_lag_seconds:,.1f} s"
        for label, value in (
            ("events/s", f"{h.events_per_second:,.0f}"),
            ("dead letters", f"{h.dead_letters:,.0f}"),
            ("late events", f"{h.late:,.0f}"),
            ("watermark lag", lag),
        ):
            table.add_row(label, value)
        return Panel(table, title="Health")


def sparkline(values: list[float | None]) -> str:
    numbers = [v for v in values if v is not None and v == v]
    if not numbers:
        return ""
    low, high = min(numbers), max(numbers)
    span = (high - low) or 1.0
    return "".join(" " if v is None or v != v else SPARK[int((v - low) / span * (len(SPARK) - 1))] for v in values)
