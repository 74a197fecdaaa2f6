"""KPI goals: the catalogue's default goals, overridden by the `goals` setting.

The live view colours breaches from these and the Prometheus alert rules are generated
from them, so a goal is written once. In a config file:

    [goals]
    conversion_rate = { min = 0.02 }        # breached when the value falls below 0.02
    first_response_seconds = { max = 1800 } # breached when p90 rises above 30 min
    bounce_rate = {}                         # no goal for this KPI
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SettingsError
from ..settings import Settings
from .kpis import BY_KEY, CATALOGUE

# A goal on a quantile KPI is about its overall p90 (not a channel or priority breakdown).
QUANTILE_GOAL_SERIES = {"quantile": "0.9"}


@dataclass(frozen=True)
class Goal:
    kpi: str
    op: str  # ">=": at least `target`; "<=": at most `target`
    target: float
    series: dict[str, str] = field(default_factory=dict)  # the dimension values the goal applies to

    def met(self, value: float | None) -> bool | None:
        """True/False, or None when the window has no value (no denominator)."""
        if value is None or value != value:  # None or NaN
            return None
        return value >= self.target if self.op == ">=" else value <= self.target

    def applies_to(self, dimensions: dict[str, str]) -> bool:
        dims = BY_KEY[self.kpi].dims
        return all(dimensions.get(d, "") == self.series.get(d, "") for d in dims if d != "currency")

    @property
    def text(self) -> str:
        """Human form: ">= 1%", "<= 1h 0m", "<= 0.6"."""
        return f"{self.op} {format_value(self.kpi, self.target)}"


def format_value(kpi: str, value: float | None) -> str:
    if value is None or value != value:
        return "n/a"
    unit = BY_KEY[kpi].unit
    if unit == "ratio" and kpi != "nps":
        return f"{value * 100:.1f}%"
    if unit == "seconds":
        seconds = round(value)
        if seconds >= 3600:
            return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
        if seconds >= 60:
            return f"{seconds // 60}m {seconds % 60:02d}s"
        return f"{value:.1f}s"
    if unit in ("count", "tickets"):
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def goals(settings: Settings) -> dict[str, Goal]:
    """Every KPI's goal after overrides; raises SettingsError naming the bad key."""
    resolved: dict[str, Goal] = {}
    for kpi in CATALOGUE:
        if kpi.goal is not None:
            op, target = kpi.goal
            resolved[kpi.key] = Goal(kpi.key, op, target, _series(kpi.key))
    for key, raw in settings.goals.items():
        overridden = BY_KEY.get(key)
        if overridden is None or overridden.insight:
            choices = ", ".join(k.key for k in CATALOGUE if not k.insight)
            raise SettingsError(f"goals: unknown KPI `{key}`; goals can be set for: {choices}")
        if not isinstance(raw, dict) or set(raw) - {"min", "max"} or len(raw) > 1:
            raise SettingsError(f"goals.{key}: must be {{ min = N }}, {{ max = N }} or {{}} (no goal), got {raw!r}")
        if not raw:
            resolved.pop(key, None)
            continue
        ((bound, target),) = raw.items()
        if isinstance(target, bool) or not isinstance(target, (int, float)):
            raise SettingsError(f"goals.{key}.{bound}: must be a number, got {target!r}")
        resolved[key] = Goal(key, ">=" if bound == "min" else "<=", float(target), _series(key))
    return resolved


def _series(key: str) -> dict[str, str]:
    return dict(QUANTILE_GOAL_SERIES) if "quantile" in BY_KEY[key].dims else {}
