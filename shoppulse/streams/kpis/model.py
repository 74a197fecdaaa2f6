"""What a KPI is: its definition (`Kpi`), the values it computes (`Value`), the Prometheus
counters it exports (`Counted`) and what a computation reads besides its family's merged
measures (`Context`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..measures import Measures

FAMILIES = ("traffic", "sessions", "sales", "support")  # with measures of their own; `cross` joins them


@dataclass(frozen=True)
class Value:
    kpi: str
    value: float | None
    dimensions: dict[str, str] = field(default_factory=dict)
    numerator: float | None = None
    denominator: float | None = None


@dataclass(frozen=True)
class Counted:
    """A measure exported as the Prometheus counter `shoppulse_<name>_total`. A measure that
    is a dict by label value (revenue by currency) becomes a counter with that `label`."""

    name: str
    measure: str
    label: str | None = None
    scale: int = 1  # micro-units or milliseconds per base unit


@dataclass(frozen=True)
class Kpi:
    key: str
    family: str  # traffic | sessions | sales | support | cross
    unit: str  # count | ratio | seconds | currency | average | score | tickets (a snapshot)
    formula: str
    source: str
    compute: Callable[[Measures, Context], list[Value]]
    attribution: str = "the window of the event's `ts`"
    # Measures exported as Prometheus counters: a name (`shoppulse_<measure>_total`) or a `Counted`.
    counters: tuple[str | Counted, ...] = ()
    goal: tuple[str, float] | None = None  # (">=" | "<=", target) default goal, overridable
    insight: bool = False  # a top-N list: kpi-results only, never a metric
    dims: tuple[str, ...] = ()  # dimension labels its values may carry (bounded)
    money_sum: bool = False  # a sum of money over the window (revenue), not a ratio (AOV)

    @property
    def metric(self) -> str:
        """Prometheus gauge for the last closed window. Counts and money sums get `_per_window`
        so they never clash with the counter `shoppulse_<name>_total` of the same measure."""
        if self.unit == "ratio":
            return f"shoppulse_{self.key.removesuffix('_rate')}_ratio"
        if self.unit == "count" or self.money_sum:
            return f"shoppulse_{self.key}_per_window"
        return f"shoppulse_{self.key}"  # seconds keys end in _seconds; currency, score and average have no unit


@dataclass
class Context:
    label_cap: int = 8
    top_n: int = 20
    other: dict[str, Measures] = field(default_factory=dict)  # the other families' merged measures, for `cross`
