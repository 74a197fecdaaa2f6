"""The Grafana dashboards: generated from the catalogue and checked in up to date, valid against
Grafana 11.0's own dashboard schema (grafana/schema/, generated from the @grafana/schema npm
package by scripts/grafana-schema.sh), linted in the spirit of Grafana's dashboard-linter, and
querying only metrics and labels that the worker exports or the recording rules define.
tests/test_prometheus_live.py runs every query against a real Prometheus."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import dashboard_queries as dq
import jsonschema
import pytest
import yaml

from shoppulse.deployfiles import boards, dashboards, panels
from shoppulse.deployfiles.alerts import alert_rules, recording_rules
from shoppulse.deployfiles.series import FRESHNESS
from shoppulse.outputs.prometheus import Metrics
from shoppulse.settings import Settings, window_label
from shoppulse.streams.goals import goals
from shoppulse.streams.kpis import BY_KEY, CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "grafana" / "schema"
PROVISIONING = ROOT / "grafana" / "provisioning"
BOARDS = dq.load()
PANEL_TYPES = {"timeseries", "stat", "bargauge", "heatmap"}
UIDS = {
    "sales.json": "shoppulse-sales",
    "funnel.json": "shoppulse-funnel",
    "support.json": "shoppulse-support",
    "pipeline.json": "shoppulse-pipeline",
}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


def _panels(name: str) -> list[dict]:
    return dq.panels(BOARDS[name])


ALL_PANELS = [(name, p) for name in BOARDS for p in _panels(name)]
PANEL_IDS = [f"{name}:{p['id']}:{p['title']}" for name, p in ALL_PANELS]


# ------------------------------------------------------------------ generated, up to date, complete


def test_checked_in_dashboards_match_the_generator():
    rendered = dashboards.render(Settings())
    assert set(BOARDS) == set(rendered) == set(UIDS), (
        "regenerate: python -m shoppulse.deployfiles.dashboards grafana/dashboards"
    )
    for name, text in rendered.items():
        assert (dq.DASHBOARDS / name).read_text() == text, (
            f"grafana/dashboards/{name} is out of date: python -m shoppulse.deployfiles.dashboards grafana/dashboards"
        )


def test_every_catalogue_kpi_has_a_panel():
    """Read from the JSON: some panel query reads each KPI's gauge."""
    queried = {name for _, p in ALL_PANELS for t in p["targets"] for name in dq.metric_names(t["expr"])}
    missing = [k.key for k in CATALOGUE if not k.insight and k.metric not in queried]
    assert not missing, f"catalogue KPIs without a panel: {missing}"


def test_a_new_catalogue_kpi_gets_a_panel(monkeypatch):
    """The generator places KPIs it has no layout for in a "More" row, so none is left out."""
    from shoppulse.streams.kpis import Kpi
    from shoppulse.streams.kpis.compute import count

    extra = Kpi("test_new_kpi", "support", "count", "a test KPI", "none", count("test_new_kpi", "x"))
    monkeypatch.setattr(boards, "CATALOGUE", (*CATALOGUE, extra))
    monkeypatch.setitem(boards.BY_KEY, "test_new_kpi", extra)
    support = next(b for b in boards.boards() if b.uid == "shoppulse-support")
    assert any("test_new_kpi" in p.kpis for row in support.rows for p in row.panels)


def test_fixed_uids_utc_and_the_variables():
    windows = [window_label(s) for s in Settings().windows_seconds]
    for name, board in BOARDS.items():
        assert board["uid"] == UIDS[name]
        assert board["timezone"] == "utc"
        variables = dq.variables(board)
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        assert variables["window"]["query"].split(",") == windows
        for dim in ("currency", "device", "source", "channel", "priority", "category"):
            kpis_with_dim = [p for p in _panels(name) if any(f'{dim}=~"${dim}"' in t["expr"] for t in p["targets"])]
            if kpis_with_dim:
                assert dim in variables, f"{name}: panels filter on ${dim} but there is no such variable"
        for dim in set(variables) - {"datasource", "window"}:
            assert "label_values(" in variables[dim]["query"] and variables[dim]["allValue"] == ".+"


def test_alert_state_is_an_annotation_on_every_dashboard():
    for name, board in BOARDS.items():
        exprs = [a.get("target", {}).get("expr", "") for a in board["annotations"]["list"]]
        assert any(e.startswith("ALERTS{") and 'alertstate="firing"' in e for e in exprs), name
        assert any("shoppulse_build_info" in e for e in exprs), f"{name}: no deploy annotation"


# ------------------------------------------------------------------ Grafana's schema


def _schema(name: str) -> dict:
    return json.loads((SCHEMA / name).read_text())


def dashboard_schema() -> dict:
    """Grafana's dashboard schema with one documented relaxation: the TypeScript export turns
    AnnotationQuery into a closed type, while Grafana's CUE schema leaves it open ("unless
    datasources have migrated to the target+mapping, they just spread their query into the base
    object") and its veneer types `target` as a data query. The Prometheus annotation fields
    (titleFormat, tagKeys, textFormat, useValueForTime) and a query `target` are therefore allowed."""
    schema = _schema("dashboard.json")
    annotation = schema["definitions"]["AnnotationQuery"]
    for key in ("titleFormat", "tagKeys", "textFormat", "useValueForTime"):
        annotation["properties"][key] = {"type": "boolean"} if key == "useValueForTime" else {"type": "string"}
    annotation["properties"]["target"] = {
        "type": "object",
        "required": ["refId", "expr"],
        "properties": {"refId": {"type": "string"}, "expr": {"type": "string"}, "interval": {"type": "string"}},
        "additionalProperties": False,
    }
    return schema


def test_the_schema_is_grafanas_for_the_pinned_version():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["grafana"]["image"] == f"grafana/grafana:{dashboards.GRAFANA_VERSION}"
    assert f"GRAFANA={dashboards.GRAFANA_VERSION}" in (ROOT / "scripts" / "grafana-schema.sh").read_text()
    schema = _schema("dashboard.json")
    assert schema["$ref"] == "#/definitions/Dashboard"
    assert schema["definitions"]["Panel"]["additionalProperties"] is False  # strict: a misspelt key fails


@pytest.mark.parametrize("name", sorted(UIDS))
def test_dashboard_matches_grafanas_schema(name):
    jsonschema.validate(BOARDS[name], dashboard_schema())


@pytest.mark.parametrize(("name", "panel"), ALL_PANELS, ids=PANEL_IDS)
def test_panel_options_match_the_plugin_schema(name, panel):
    assert panel["type"] in PANEL_TYPES, panel["type"]
    jsonschema.validate(panel["options"], _schema(f"{panel['type']}.options.json"))
    custom = SCHEMA / f"{panel['type']}.fieldconfig.json"
    if custom.exists():
        jsonschema.validate(panel["fieldConfig"]["defaults"]["custom"], _schema(custom.name))


def test_the_schema_check_can_fail():
    board = copy.deepcopy(BOARDS["sales.json"])
    board["panels"][1]["gridPos"]["w"] = "wide"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(board, dashboard_schema())
    board = copy.deepcopy(BOARDS["sales.json"])
    board["panels"][1]["titel"] = "typo"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(board, dashboard_schema())
    options = copy.deepcopy(_panels("sales.json")[0]["options"])
    del options["reduceOptions"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(options, _schema("stat.options.json"))


# ------------------------------------------------------------------ lint


def lint(panel: dict) -> list[str]:
    """Rules in the spirit of Grafana's dashboard-linter, plus ours."""
    problems = []
    if panel["datasource"] != dashboards.DATASOURCE:
        problems.append("panel datasource is not the $datasource variable")
    unit = panel["fieldConfig"]["defaults"].get("unit")
    if not unit:
        problems.append("no unit")
    for target in panel["targets"]:
        expr = target["expr"]
        if target["datasource"] != dashboards.DATASOURCE:
            problems.append(f"target {target['refId']} does not use the $datasource variable")
        for fn in ("rate", "irate"):
            for match in dq.re.finditer(rf"\b{fn}\(([^()]|\([^()]*\))*?\[([^\]]+)\]", expr):
                if match.group(2) != "$__rate_interval":
                    problems.append(f"{fn}() over [{match.group(2)}], not [$__rate_interval]: {expr}")
        for match in dq.re.finditer(r"\bincrease\([^\[]*\[([^\]]+)\]", expr):
            if match.group(1) not in ("$__rate_interval", "$__range"):
                problems.append(f"increase() over [{match.group(1)}]: {expr}")
        for metric, labels in dq.selectors(expr):
            if metric in WINDOWED and labels.get("window") != ("=", "$window"):
                problems.append(f'{metric} not pinned to window="$window" (it would mix or sum windows): {expr}')
        for metric in dq.metric_names(expr):
            if metric in WINDOWED and not any(m == metric for m, _ in dq.selectors(expr)):
                problems.append(f"{metric} without a window matcher: {expr}")
    return problems


WINDOWED = {k.metric for k in CATALOGUE if not k.insight} | {FRESHNESS}


@pytest.mark.parametrize(("name", "panel"), ALL_PANELS, ids=PANEL_IDS)
def test_panel_lint(name, panel):
    assert not lint(panel), lint(panel)


def test_lint_can_fail():
    panel = copy.deepcopy(_panels("pipeline.json")[3])  # CPU: rate(...[$__rate_interval])
    panel["targets"][0]["expr"] = panel["targets"][0]["expr"].replace("$__rate_interval", "5m")
    panel["fieldConfig"]["defaults"]["unit"] = ""
    panel["datasource"] = {"type": "prometheus", "uid": "shoppulse-prometheus"}
    sales = copy.deepcopy(_panels("sales.json")[1])
    sales["targets"][0]["expr"] = "sum(shoppulse_orders_per_window)"
    problems = lint(panel) + lint(sales)
    assert any("not [$__rate_interval]" in p for p in problems), problems
    assert "no unit" in problems and any("datasource" in p for p in problems), problems
    assert any("without a window matcher" in p for p in problems), problems


def test_kpi_panels_have_their_goal_as_a_threshold_and_the_right_unit():
    gs = goals(Settings())
    by_metric = {k.metric: k for k in CATALOGUE if not k.insight}
    seen_goal_lines = set()
    for name, panel in ALL_PANELS:
        kpis = {by_metric[m] for t in panel["targets"] for m in dq.metric_names(t["expr"]) if m in by_metric}
        # A quantile KPI's panel also shows its mean, a KPI of its own.
        kpis -= {BY_KEY[k.key.replace("_seconds", "_mean_seconds")] for k in kpis if "quantile" in k.dims}
        if len(kpis) != 1 or panel["type"] != "timeseries":
            continue
        (kpi,) = kpis
        defaults = panel["fieldConfig"]["defaults"]
        expected_unit = {"ratio": "percentunit", "seconds": "s"}.get(kpi.unit)
        if expected_unit:
            assert defaults["unit"] == expected_unit, (name, panel["title"])
        if kpi.unit == "currency":
            units = {o["properties"][0]["value"] for o in panel["fieldConfig"]["overrides"]}
            assert {"currencyUSD", "currencyEUR"} <= units, (name, panel["title"])
        if kpi.key in gs:
            goal = gs[kpi.key]
            steps = defaults["thresholds"]["steps"]
            assert steps[1]["value"] == goal.target, (name, panel["title"], steps)
            assert (steps[1]["color"] == "green") == (goal.op == ">="), (name, panel["title"])
            assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
            seen_goal_lines.add(kpi.key)
        if panels.may_be_nan(kpi):
            assert all(t["expr"].endswith(">= -Inf") for t in panel["targets"]), (name, panel["title"])
            assert defaults["noValue"] == "no data"
    assert seen_goal_lines == set(gs), set(gs) - seen_goal_lines


# ------------------------------------------------------------------ only what the worker exports


def exported() -> dict[str, set[str]]:
    """Series name -> label names, for everything a worker's registry exports (read from the
    registry itself: a family with no children yet still declares its labels)."""
    registry = Metrics().registry
    names: dict[str, set[str]] = {}
    for collector in registry._collector_to_names:  # the registry's collectors; there is no public list
        labels = set(getattr(collector, "_labelnames", ()))
        kind, base = getattr(collector, "_type", None), getattr(collector, "_name", None)
        if kind == "counter":
            names[f"{base}_total"] = labels
        elif kind == "histogram":
            names.update({f"{base}_bucket": labels | {"le"}, f"{base}_count": labels, f"{base}_sum": labels})
        elif kind == "gauge":
            names[base] = labels
        else:  # process, platform and gc collectors
            for family in collector.collect():
                for sample in family.samples:
                    names.setdefault(sample.name, set()).update(sample.labels)
    return names


def recorded() -> dict[str, set[str]]:
    return {rule["record"]: dq.grouping_labels(rule["expr"]) for rule in recording_rules()}


def unknown_metrics_and_labels(expr: str, known: dict[str, set[str]]) -> list[str]:
    problems = [f"{m} is not exported by the worker nor recorded" for m in dq.metric_names(expr) if m not in known]
    for metric, labels in dq.selectors(expr):
        if metric == "ALERTS":
            continue
        for label in set(labels) - known.get(metric, set()) - TARGET_LABELS:
            problems.append(f"{metric} has no label {label!r}")
    read = set().union(*(known.get(m, set()) for m in dq.metric_names(expr))) | TARGET_LABELS
    problems += [f"grouping by {label!r}, which none of its metrics has" for label in dq.grouping_labels(expr) - read]
    return problems


def test_panels_query_only_exported_metrics_and_labels():
    known = exported() | recorded() | {"up": set()}
    problems = [
        f"{t.board} {t.panel!r}: {p}" for t in dq.targets(BOARDS) for p in unknown_metrics_and_labels(t.expr, known)
    ]
    for name, board in BOARDS.items():
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                inner = variable["query"].removeprefix("label_values(").rsplit(",", 1)
                problems += [f"{name} ${variable['name']}: {p}" for p in unknown_metrics_and_labels(inner[0], known)]
                metric = dq.selectors(inner[0])[0][0]
                if inner[1].strip(" )") not in known[metric]:
                    problems.append(f"{name} ${variable['name']}: {metric} has no label {inner[1]}")
    assert not problems, "\n".join(problems)


def test_the_exported_check_can_fail():
    known = exported() | recorded() | {"up": set()}
    assert unknown_metrics_and_labels('shoppulse_conversion_ratio{window="5m", stat="p90"}', known)
    assert unknown_metrics_and_labels("sum by (stat) (shoppulse_first_response_seconds)", known)
    assert unknown_metrics_and_labels("rate(shoppulse_conversions_total[5m])", known)
    assert not unknown_metrics_and_labels('sum by (quantile) (shoppulse_first_response_seconds{window="5m"})', known)


def test_promtool_parses_every_query(tmp_path):
    """Each query, with the variables and macros Grafana would substitute, is valid PromQL."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: scripts/setup-prometheus.sh installs it"
    rules = []
    for n, target in enumerate(dq.targets(BOARDS)):
        values = {"window": "5m", **{v: ".+" for v in dq.used_variables(target.expr)} | {"window": "5m"}}
        rules.append({"record": f"dashboard:query:{n}", "expr": dq.substitute(target, values)})
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(tmp_path / "queries.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ provisioning


def test_provisioning_matches_the_compose_file():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in compose["volumes"])
    assert mounts == {
        "./grafana/provisioning": "/etc/grafana/provisioning",
        "./grafana/dashboards": "/var/lib/grafana/dashboards",
    }
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "shoppulse.yml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["folder"] == "shoppulse"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    home = compose["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/var/lib/grafana/dashboards/sales.json" and (dq.DASHBOARDS / "sales.json").exists()
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert datasource["uid"] == dashboards.DATASOURCE_UID and datasource["type"] == "prometheus"
    for board in BOARDS.values():
        assert dq.variables(board)["datasource"]["current"]["value"] == dashboards.DATASOURCE_UID


def test_alert_dashboard_links_point_at_existing_panels():
    ids = {(b["uid"], p["id"]): p for b in BOARDS.values() for p in dq.panels(b)}
    rules = [r for g in alert_rules(Settings())["groups"] for r in g["rules"] if "alert" in r]
    for rule in rules:
        url = rule["annotations"]["dashboard_url"]
        match = dq.re.fullmatch(r"http://localhost:3000/d/([\w-]+)/[\w-]+\?viewPanel=(\d+)", url)
        assert match, url
        assert (match.group(1), int(match.group(2))) in ids, f"{rule['alert']}: {url} names no panel"
    conversion = next(r for r in rules if r["alert"] == "ShoppulseConversionRateBelowGoal")
    uid, pid = dq.re.search(r"/d/([\w-]+)/.*viewPanel=(\d+)", conversion["annotations"]["dashboard_url"]).groups()
    assert "shoppulse_conversion_ratio" in ids[(uid, int(pid))]["targets"][0]["expr"]
    assert BY_KEY["conversion_rate"].metric == "shoppulse_conversion_ratio"
