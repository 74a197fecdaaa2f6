"""Grafana dashboard JSON, generated from the KPI catalogue and its goals.

The four dashboards (boards.py), made of panels (panels.py), are written as Grafana 11.0
dashboard JSON into `grafana/dashboards/`; tests/test_dashboards.py keeps the checked-in
files equal to this module's output, validates them against Grafana's own schema and lints
them, and tests/test_prometheus_live.py runs every query against a real Prometheus scraping
a real worker. Regenerate after changing the catalogue or a goal:

    python -m shoppulse.deployfiles.dashboards grafana/dashboards
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..config import apply_overrides, env_overrides
from ..settings import Settings, window_label
from ..streams.kpis import CATALOGUE
from .boards import boards
from .panels import Board, Panel, Query, selector, thresholds
from .series import JOB

GRAFANA_VERSION = "11.0.0"  # docker-compose.yml's grafana/grafana image; grafana/schema/ is for this version
SCHEMA_VERSION = 39  # the dashboard JSON schemaVersion Grafana 11.0 writes
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
DATASOURCE_UID = "shoppulse-prometheus"  # grafana/provisioning/datasources/prometheus.yml


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
        prog="python -m shoppulse.deployfiles.dashboards",
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
