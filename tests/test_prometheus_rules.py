"""Alert rules from the catalogue goals: in step with the catalogue, valid for promtool, and
firing exactly when a series breaches its goal (`promtool test rules`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shoppulse.streams.goals import goals
from shoppulse.streams.kpis import BY_KEY
from shoppulse.streams.settings import Settings
from shoppulse.tools.prometheus import render_rules

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "rules.yml"


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: scripts/setup.sh installs it (apt-get install prometheus)"
    return path


def test_checked_in_rules_match_the_catalogue():
    assert RULES.read_text() == render_rules(Settings()), "regenerate: python -m shoppulse.tools.prometheus rules > deploy/prometheus/rules.yml"


def test_promtool_accepts_the_rules():
    result = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _series(kpi_key: str, window: str, labels: dict[str, str]) -> str:
    """A gauge series as the worker exports it: every dimension label present, empty = overall."""
    kpi = BY_KEY[kpi_key]
    metric = {"ratio": f"shoppulse_{kpi_key.removesuffix('_rate')}_ratio"}.get(kpi.unit, f"shoppulse_{kpi_key}")
    if kpi.unit == "count":
        metric = f"shoppulse_{kpi_key}_per_window"
    all_labels = {"window": window, **{d: labels.get(d, "") for d in kpi.dims}}
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in all_labels.items()) + "}"


@pytest.mark.parametrize("overrides", [{}, {"conversion_rate": {"min": 0.05}, "orders": {"min": 3}}])
def test_each_goal_fires_on_a_breach_and_not_when_met(tmp_path, overrides):
    settings = Settings(goals=overrides)
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(render_rules(settings, window="5m", for_="1m"))
    tests = []
    for goal in goals(settings).values():
        # Values on either side of the target, chosen from the goal alone.
        bad = goal.target * 0.5 if goal.op == ">=" else goal.target * 1.5 + 1
        good = goal.target * 1.5 + 1 if goal.op == ">=" else goal.target * 0.5
        breakdown = {"channel": "email"} if "channel" in BY_KEY[goal.kpi].dims else None
        series = [
            {"series": _series(goal.kpi, "5m", goal.series), "values": f"{bad}x10"},
            {"series": _series(goal.kpi, "1m", goal.series), "values": f"{bad}x10"},  # another window: ignored
        ]
        if breakdown:  # a breaching breakdown series must not page on its own
            series.append({"series": _series(goal.kpi, "5m", {**goal.series, **breakdown}), "values": f"{bad}x10"})
        rule = next(r for r in yaml.safe_load(rules_file.read_text())["groups"][0]["rules"] if r.get("labels", {}).get("kpi") == goal.kpi)
        name = rule["alert"]
        # promtool compares annotations too: the rendered templates, with the breaching value.
        value = f"{bad:f}".rstrip("0").rstrip(".")
        annotations = {k: v.replace("{{ $value }}", value) for k, v in rule["annotations"].items()}
        tests.append({
            "interval": "1m", "input_series": series,
            "alert_rule_test": [{"eval_time": "5m", "alertname": name, "exp_alerts": [{"exp_annotations": annotations, "exp_labels": {
                "severity": "page", "kpi": goal.kpi, "window": "5m",
                **{d: goal.series.get(d, "") for d in BY_KEY[goal.kpi].dims if goal.series.get(d)}}}]}],
        })  # fmt: skip
        tests.append({
            "interval": "1m", "input_series": [{"series": _series(goal.kpi, "5m", goal.series), "values": f"{good}x10"}],
            "alert_rule_test": [{"eval_time": "5m", "alertname": name, "exp_alerts": []}],
        })  # fmt: skip
    (tmp_path / "tests.yml").write_text(yaml.safe_dump({"rule_files": [str(rules_file)], "tests": tests}))
    result = subprocess.run([_promtool(), "test", "rules", str(tmp_path / "tests.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(tests) == 2 * len(goals(settings)) > 0
