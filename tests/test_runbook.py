"""docs/runbook.md and the alert rules stay in step: a section per alert, with what it means,
first checks, likely causes and how to silence it, and the alert's severity; every
runbook_url points at an existing section."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from shoppulse.deployfiles.alerts import alert_rules
from shoppulse.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RUNBOOK = ROOT / "docs" / "runbook.md"
PARTS = ("**What it means**", "**First checks**", "**Likely causes**", "**Silence**")


def _sections() -> dict[str, str]:
    """GitHub anchor -> text of each `###` section."""
    text = RUNBOOK.read_text()
    out = {}
    for match in re.finditer(r"^### (.+?)\n(.*?)(?=^##|\Z)", text, re.M | re.S):
        out[match.group(1).strip().lower().replace(" ", "-")] = match.group(2)
    for match in re.finditer(r"^## (.+?)\n(.*?)(?=^##|\Z)", text, re.M | re.S):
        out.setdefault(match.group(1).strip().lower().replace(" ", "-"), match.group(2))
    return out


def _rules(settings: Settings) -> list[dict]:
    return [r for g in alert_rules(settings)["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_has_a_section_and_every_section_an_alert():
    sections = _sections()
    checked_in = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())["groups"]
    names = {r["alert"] for g in checked_in for r in g["rules"] if "alert" in r}
    alert_sections = {a for a in sections if a.startswith("shoppulse")}
    assert {n.lower() for n in names} - alert_sections == set(), "alerts without a section in docs/runbook.md"
    assert alert_sections - {n.lower() for n in names} == set(), "docs/runbook.md sections for alerts that do not exist"


def test_each_section_says_what_to_do_and_the_severity():
    sections = _sections()
    by_name: dict[str, set[str]] = {}
    for rule in _rules(Settings()):
        by_name.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    for name, severities in by_name.items():
        text = sections[name.lower()]
        missing = [p for p in PARTS if p not in text]
        assert not missing, f"docs/runbook.md#{name.lower()} lacks {missing}"
        severity_line = text.split("**Fires when**")[0]
        for severity in severities:
            assert severity in severity_line, f"{name}: the section does not give severity {severity}"


def test_runbook_urls_point_at_sections():
    """Also for goals added in the config (they link to the generic section)."""
    sections = _sections()
    settings = Settings(goals={"orders": {"min": 3}, "refund_rate": {"max": 0.1}})
    for rule in _rules(settings):
        url = rule["annotations"]["runbook_url"]
        path, anchor = url.split("#")
        assert path == "docs/runbook.md" and anchor in sections, url
    assert any(r["annotations"]["runbook_url"].endswith("#other-goal-alerts") for r in _rules(settings))
