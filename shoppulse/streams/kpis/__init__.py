"""The KPI catalogue: every KPI once, with its formula, source definition and attribution.

docs/kpis.md documents this list (tests/test_docs.py checks it), the Prometheus metric
names come from it, and the exporters and tests read it. Each KPI is computed from the
merged `Measures` of one window of one family:

- `traffic`  clickstream events, attributed to the event's window;
- `sessions` session outcomes, attributed to the window where the session started;
- `sales`    order events;
- `support`  ticket events; durations count in the window where they end;
- `cross`    KPIs joining two families of the same window (revenue per visitor, hit rate).

Each family's KPIs are in the module of its name, and the catalogue lists them in the order
above; model.py defines what a KPI is, compute.py the functions most KPIs compute with.
"""

from __future__ import annotations

from ..measures import Measures
from . import cross, sales, sessions, support, traffic
from .cross import CROSS_NEEDS
from .model import FAMILIES, Context, Counted, Kpi, Value

__all__ = [
    "BY_KEY",
    "CATALOGUE",
    "CROSS_NEEDS",
    "FAMILIES",
    "Context",
    "Counted",
    "Kpi",
    "Value",
    "compute_family",
    "counters",
]

# In this order: docs/kpis.md, the dashboards' "More" rows and the tests list KPIs in it.
CATALOGUE: tuple[Kpi, ...] = (*traffic.KPIS, *sessions.KPIS, *sales.KPIS, *support.KPIS, *cross.KPIS)

BY_KEY = {kpi.key: kpi for kpi in CATALOGUE}


def counters() -> list[Counted]:
    """Every counter of the catalogue, once, by name."""
    specs = {}
    for kpi in CATALOGUE:
        for spec in kpi.counters:
            spec = Counted(spec, spec) if isinstance(spec, str) else spec
            specs[spec.name] = spec
    return sorted(specs.values(), key=lambda c: c.name)


def compute_family(family: str, measures: Measures, ctx: Context, *, insights: bool) -> list[Value]:
    values: list[Value] = []
    for kpi in CATALOGUE:
        if kpi.family == family and (insights or not kpi.insight):
            values.extend(kpi.compute(measures, ctx))
    return values
