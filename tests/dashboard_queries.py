"""The queries of the generated Grafana dashboards, as Prometheus would run them: every panel
target and variable of every dashboard, with Grafana's variables and macros replaced.
Shared by tests/test_dashboards.py (static checks) and tests/test_prometheus_live.py."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "grafana" / "dashboards"

# What Grafana substitutes for its macros, for a 6 h view at about 1,000 points and a 15 s scrape:
# $__interval 15s (or the panel's minimum interval), $__rate_interval max(4 x scrape, interval + scrape).
MACROS = {"$__range": "6h"}
PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "rate",
    "irate",
    "increase",
    "delta",
    "deriv",
    "histogram_quantile",
    "time",
    "unless",
    "and",
    "or",
    "offset",
    "Inf",
    "NaN",
    "absent",
    "label_values",
}


@dataclass(frozen=True)
class Target:
    board: str
    panel: str
    panel_id: int
    expr: str  # as in the JSON, with $variables
    instant: bool
    interval: str | None  # the panel's minimum interval


def load() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


def targets(boards: dict[str, dict]) -> list[Target]:
    return [
        Target(name, p["title"], p["id"], t["expr"], t.get("instant", False), p.get("interval"))
        for name, board in boards.items()
        for p in panels(board)
        for t in p["targets"]
    ]


def variables(board: dict) -> dict[str, dict]:
    return {v["name"]: v for v in board["templating"]["list"]}


def used_variables(expr: str) -> list[str]:
    return sorted({m for m in re.findall(r"\$(\w+)", expr) if not m.startswith("__")})


def rate_interval(panel_interval: str | None, scrape_seconds: int) -> str:
    interval = int(panel_interval.removesuffix("m")) * 60 if panel_interval else 15
    return f"{max(4 * scrape_seconds, interval + scrape_seconds)}s"


def substitute(target: Target, values: dict[str, str], scrape_seconds: int = 15) -> str:
    expr = target.expr.replace("$__rate_interval", rate_interval(target.interval, scrape_seconds))
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    assert "$" not in expr, f"unsubstituted variable in {expr!r}"
    return expr


def combinations(names: list[str], choices: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the values of the variables `names` uses (each variable's every value)."""
    return [dict(zip(names, combo)) for combo in itertools.product(*(choices[n] for n in names))]


# ------------------------------------------------------------------ a small PromQL reader


def strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """(metric, {label: (operator, value)}) for each `metric{...}` selector."""
    out = []
    for match in re.finditer(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", expr):
        labels = {m[0]: (m[1], m[2]) for m in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', match.group(2))}
        out.append((match.group(1), labels))
    return out


def grouping_labels(expr: str) -> set[str]:
    """Labels named in by (...), without (...), on (...) and ignoring (...)."""
    found: set[str] = set()
    for match in re.finditer(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", strip_strings(expr)):
        found.update(x.strip() for x in match.group(1).split(",") if x.strip())
    return found


def metric_names(expr: str) -> set[str]:
    """Every metric name the expression reads."""
    e = strip_strings(expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\boffset\s+\w+", " ", e)
    e = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][-+]?\d+)?[smhdwy]?\b", " ", e)
    return {t for t in re.findall(r"[a-zA-Z_:][\w:]*", e) if t not in PROMQL_WORDS}
