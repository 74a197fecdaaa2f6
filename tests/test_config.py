"""Config files, environment and flags: precedence, `shoppulse config check`, the example file and the reference."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from shoppulse.cli import build_parser
from shoppulse.cli.common import settings_from_args
from shoppulse.config import check_config, env_name, load_settings, setting_keys
from shoppulse.errors import SettingsError
from shoppulse.settings import Settings
from shoppulse.streams.goals import goals

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "shoppulse.example.toml"
REFERENCE = ROOT / "docs" / "configuration.md"


def _write(tmp_path: Path, text: str, name: str = "shoppulse.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _check(path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"}  # no SHOPPULSE_* variables from the caller
    return subprocess.run(
        [sys.executable, "-m", "shoppulse.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


# ------------------------------------------------------------------ precedence


def test_file_then_environment_then_flags(tmp_path):
    config = _write(
        tmp_path, 'app_id = "from-file"\npartitions = 2\ngrace_seconds = 5\n[topics]\norders = "file-orders"\n'
    )
    environ = {"SHOPPULSE_PARTITIONS": "3", "SHOPPULSE_GRACE_SECONDS": "7", "SHOPPULSE_CACHE": "/not/a/setting"}
    settings = load_settings(config, {"grace_seconds": 9.0}, environ)
    assert settings.app_id == "from-file"  # file over default
    assert settings.partitions == 3  # environment over file
    assert settings.grace_seconds == 9.0  # flag over environment
    assert settings.topics.orders == "file-orders" and settings.topics.tickets == "tickets"  # tables merge by key
    assert settings.idle_timeout_seconds == 30.0  # untouched default


def test_cli_flags_and_config_reach_settings(tmp_path, monkeypatch):
    config = _write(tmp_path, 'broker = "10.0.0.1:9092"\nmetrics_port = 9999\nidle_timeout_seconds = 12\n')
    for name in [k for k in os.environ if k.startswith("SHOPPULSE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SHOPPULSE_METRICS_PORT", "9100")
    args = build_parser().parse_args(["worker", "--config", str(config), "--idle-timeout", "4", "--app-id", "x"])
    settings = settings_from_args(args)
    assert (settings.broker, settings.metrics_port, settings.idle_timeout_seconds, settings.app_id) == (
        "10.0.0.1:9092",
        9100,
        4.0,
        "x",
    )


def test_tables_merge_with_defaults_and_goals_override_the_catalogue(tmp_path):
    config = _write(
        tmp_path,
        "[sla_first_reply_seconds]\nurgent = 1800\n\n[goals]\nconversion_rate = { min = 0.02 }\nbounce_rate = {}\n",
    )
    settings = load_settings(config, environ={})
    assert settings.sla_first_reply_seconds == {"urgent": 1800.0, "high": 14400.0, "normal": 86400.0, "low": 172800.0}
    resolved = goals(settings)
    assert (resolved["conversion_rate"].op, resolved["conversion_rate"].target) == (">=", 0.02)
    assert "bounce_rate" not in resolved
    assert resolved["csat"].target == 0.8  # a catalogue goal the file does not mention


def test_environment_nests_and_parses():
    settings = load_settings(
        environ={
            "SHOPPULSE_TOPICS__RESULTS": "results-x",
            "SHOPPULSE_WINDOWS_SECONDS": "30, 60",
            "SHOPPULSE_SECURITY__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "SHOPPULSE_SECURITY__SASL_USERNAME": "u",
            "SHOPPULSE_SECURITY__SASL_PASSWORD": "p",
            "SHOPPULSE_SLA_FIRST_REPLY_SECONDS__LOW": "100",
            "SHOPPULSE_GOALS__CSAT__MIN": "0.9",
        }
    )
    assert settings.topics.results == "results-x"
    assert settings.windows_seconds == (30, 60)
    assert (settings.security.sasl_username, settings.security.sasl_password) == ("u", "p")
    assert settings.sla_first_reply_seconds["low"] == 100.0
    assert goals(settings)["csat"].target == 0.9


def test_environment_problems_name_the_variable():
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"SHOPPULSE_PARTITONS": "3", "SHOPPULSE_GRACE_SECONDS": "soon"})
    assert caught.value.problems == [
        "environment: SHOPPULSE_PARTITONS: unknown key (did you mean SHOPPULSE_PARTITIONS?)",
        'environment: SHOPPULSE_GRACE_SECONDS: expected a number, got "soon"',
    ]


def test_a_removed_setting_says_what_replaced_it(tmp_path):
    path = _write(tmp_path, 'data_plane = "faust"\nbatch_within_seconds = 0.2\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(config_path=path, environ={"SHOPPULSE_DATA_PLANE": "batch"})
    assert caught.value.problems == [
        f"{path}: `data_plane`: no longer a choice: the batch data plane (docs/design.md) is the only one; remove it",
        f"{path}: `batch_within_seconds`: no longer used: the data plane processes each fetch as it comes; remove it",
        "environment: SHOPPULSE_DATA_PLANE: no longer a choice: the batch data plane (docs/design.md) is the only one;"
        " remove it",
    ]


def test_flag_values_are_validated():
    with pytest.raises(SettingsError, match=r"command line: `partitions`: must be at least 1, got 0"):
        load_settings(flag_overrides={"partitions": 0}, environ={})


# ------------------------------------------------------------------ config check


def test_check_names_a_wrong_key_with_a_suggestion(tmp_path):
    result = _check(_write(tmp_path, 'partitons = 4\n[topics]\norder = "o"\n[security]\nbroker = "h:1"\n'))
    assert result.returncode == 2, result.stdout
    assert "`partitons`: unknown key (did you mean `partitions`?)" in result.stderr
    assert "`topics.order`: unknown key (did you mean `topics.orders`?)" in result.stderr
    assert "`security.broker`: unknown key here; the setting is `broker`" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_names_a_wrong_type(tmp_path):
    result = _check(
        _write(tmp_path, 'partitions = "four"\nwindows_seconds = 60\n[sla_first_reply_seconds]\nhigh = "4h"\n')
    )
    assert result.returncode == 2
    assert '`partitions`: expected an integer, got a string ("four")' in result.stderr
    assert "`windows_seconds`: expected a non-empty array of integers, got an integer (60)" in result.stderr
    assert '`sla_first_reply_seconds.high`: expected a number, got a string ("4h")' in result.stderr


def test_check_reports_every_problem_with_allowed_values(tmp_path):
    text = """
windows_seconds = [60, 90, 3600]
partitions = 0
metrics_port = 70000
compression_type = "brotli"

[security]
security_protocol = "SASL"
sasl_mechanism = "SCRAM-SHA-1"
ssl_cafile = "{missing}"

[sla_first_reply_seconds]
urgnt = 600

[goals]
conversion_rat = {{ min = 0.1 }}
bounce_rate = {{ below = 0.5 }}
""".format(missing=tmp_path / "no-such-ca.pem")
    result = _check(_write(tmp_path, text))
    assert result.returncode == 2
    expected = [
        "`security.security_protocol`: 'SASL' is not allowed; choose one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
        "`security.sasl_mechanism`: 'SCRAM-SHA-1' is not allowed; choose one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
        f"`security.ssl_cafile`: no such file: {tmp_path / 'no-such-ca.pem'}",
        "`partitions`: must be at least 1, got 0",
        "`metrics_port`: must be a port number from 0 to 65535, got 70000",
        "`compression_type`: 'brotli' is not allowed; choose one of none, gzip, snappy, lz4, zstd",
        "`windows_seconds`: 90 is not a multiple of 60",
        "`sla_first_reply_seconds.urgnt`: unknown priority (did you mean `urgent`?); the priorities are",
        "`goals.conversion_rat`: unknown KPI `conversion_rat` (did you mean `conversion_rate`?)",
        "`goals.bounce_rate`: must be { min = N }, { max = N } or {} (no goal)",
    ]
    for line in expected:
        assert line in result.stderr, f"missing: {line}\n{result.stderr}"
    assert f"{len(expected)} problems" in result.stderr


def test_check_sasl_needs_a_user(tmp_path):
    result = _check(_write(tmp_path, '[security]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\n'))
    assert result.returncode == 2
    assert "`security.sasl_username`: required when security_protocol is SASL_SSL" in result.stderr
    assert "`security.sasl_password`: required when security_protocol is SASL_SSL" in result.stderr


@pytest.mark.parametrize("windows", [[60, 0], [300, 60, 90], [60, 60]])
def test_window_sizes_must_be_positive_distinct_multiples(tmp_path, windows):
    _, problems = check_config(_write(tmp_path, f"windows_seconds = {windows}\n"))
    assert len(problems) == 1 and "windows_seconds" in problems[0]


@pytest.mark.parametrize("windows", [[60], [3600, 60, 300], [30, 60, 600]])
def test_nested_window_sizes_pass(tmp_path, windows):
    assert check_config(_write(tmp_path, f"windows_seconds = {windows}\n"))[1] == []


def test_check_gives_the_line_of_a_toml_syntax_error(tmp_path):
    result = _check(_write(tmp_path, 'broker = "a:1"\n\n[topics\norders = "o"\n'))
    assert result.returncode == 2
    assert "not valid TOML" in result.stderr and "line 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_ok_prints_the_effective_settings(tmp_path):
    ca = _write(tmp_path, "not really a certificate", "ca.pem")
    config = _write(
        tmp_path,
        f'broker = "kafka.example:9093"\npartitions = 6\n[security]\nsecurity_protocol = "SASL_SSL"\n'
        f'sasl_mechanism = "SCRAM-SHA-256"\nsasl_username = "me"\nsasl_password = "pw"\nssl_cafile = "{ca}"\n',
    )
    result = _check(config)
    assert result.returncode == 0, result.stderr
    assert f"{config}: OK" in result.stdout
    assert "kafka.example:9093 (SASL_SSL, SCRAM-SHA-256 as me)" in result.stdout
    assert "6 partitions" in result.stdout
    assert "pw" not in result.stdout  # never print the password


# ------------------------------------------------------------------ the example file and the reference


def test_example_passes_config_check():
    result = _check(EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_example_values_are_the_defaults():
    settings, problems = check_config(EXAMPLE)
    assert problems == []
    defaults = Settings()
    assert goals(settings) == goals(defaults)
    settings.goals = defaults.goals
    assert settings == defaults


def _example_keys() -> set[str]:
    """Keys set in the example, plus optional ones shown commented out (`# key = ...`) in their table."""
    keys: set[str] = set()

    def walk(table: dict, prefix: str) -> None:
        for key, value in table.items():
            if isinstance(value, dict) and prefix + key != "goals":  # goals' keys are KPIs, not settings
                walk(value, f"{prefix}{key}.")
            else:
                keys.add(prefix + key)

    walk(tomllib.loads(EXAMPLE.read_text()), "")
    table = ""
    for line in EXAMPLE.read_text().splitlines():
        if header := re.fullmatch(r"\[(\w+)\]", line):
            table = header.group(1) + "."
        elif commented := re.match(r"# (\w+) = ", line):
            keys.add(table + commented.group(1))
    return keys


def _leaf_keys() -> list[str]:
    """Every settings key; a table of free keys counts with the keys of its default."""
    keys = []
    for key, _ in setting_keys():
        default = Settings()
        for part in key.split("."):
            default = getattr(default, part)
        if key == "goals":
            keys.append("goals")
        elif isinstance(default, dict):
            keys.extend(f"{key}.{entry}" for entry in default)
        else:
            keys.append(key)
    return keys


def test_example_lists_every_setting():
    missing = [key for key in _leaf_keys() if key not in _example_keys()]
    assert not missing, f"add to shoppulse.example.toml: {missing}"


def test_reference_documents_every_setting_and_its_variable():
    text = REFERENCE.read_text()
    spans = set(re.findall(r"`([^`\n]+)`", text))
    missing = [key for key in _leaf_keys() if key not in spans and f"{key}.<kpi>" not in spans]
    missing += [env_name(key) for key in _leaf_keys() if key != "goals" and env_name(key) not in spans]
    assert not missing, f"add to docs/configuration.md: {missing}"
