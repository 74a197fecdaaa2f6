"""SASL settings from a config file reach every Kafka client: replay, the worker (its consumer,
producers, admin client and Faust app) and tail all talk to the broker's SASL_PLAINTEXT
listener with SCRAM-SHA-512 (the `kafka_broker` fixture has the user shoppulse/s3cret), and a
wrong password stops them with a message, quickly."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import DATASETS

from shoppulse.kafka.broker import free_port

pytestmark = pytest.mark.integration

SAMPLE = DATASETS / "uci-online-retail-2010-dec-head.csv"


def _config(ns, kafka_broker, password: str) -> str:
    topics = "\n".join(f'{name} = "{topic}"' for name, topic in ns.topics.items())
    path = ns.tmp_path / f"sasl-{password}.toml"
    path.write_text(f"""
broker = "{kafka_broker.sasl_bootstrap}"
app_id = "{ns.app_id}"
idle_timeout_seconds = 5

[security]
security_protocol = "SASL_PLAINTEXT"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "shoppulse"
sasl_password = "{password}"

[topics]
{topics}
""")
    return str(path)


def _file_only(ns) -> None:
    """Drop the namespace's SHOPPULSE_* variables: they would override the file."""
    ns.env = {k: v for k, v in ns.env.items() if not k.startswith("SHOPPULSE_")}


def test_worker_replay_and_tail_over_sasl_scram(namespace, kafka_broker):
    ns = namespace()
    _file_only(ns)
    config = _config(ns, kafka_broker, "s3cret")
    result = ns.shoppulse("replay", "online-retail", str(SAMPLE), "--quiet", "--config", config)
    assert result.returncode == 0, result.stderr
    with open(ns.tmp_path / "w0.log", "w") as log:  # ns.worker_log() reads it
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shoppulse.cli",
                "worker",
                "--config",
                config,
                "--data-dir",
                str(ns.tmp_path / "w0"),
                "--metrics-port",
                str(free_port()),
                "--metrics-host",
                "127.0.0.1",
            ],
            env=ns.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ns.workers.append(worker)  # stopped by the fixture

    # Read through the plain listener: the records can only be there if the worker got in over SASL.
    has_final = lambda rs: any(r["final"] and r["kpi"] == "orders" and r["window"] == "1h" for r in rs)  # noqa: E731
    records = ns.read_topic(ns.topics["results"], quiet_seconds=3, timeout=300, until=has_final)
    assert has_final(records), ns.worker_log()
    assert worker.poll() is None, ns.worker_log()

    tail = ns.shoppulse(
        "tail", "--config", config, "--from-beginning", "--json", "--final-only", "--max-records", "5", timeout=120
    )
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(lines) == 5 and all(r["final"] for r in lines)


@pytest.mark.parametrize(
    "command", [["worker"], ["replay", "online-retail", str(SAMPLE), "--quiet"], ["tail"]], ids=lambda c: c[0]
)
def test_wrong_password_is_a_clear_error(namespace, kafka_broker, command):
    ns = namespace()
    _file_only(ns)
    config = _config(ns, kafka_broker, "wrong")
    extra = ["--data-dir", str(ns.tmp_path / "w"), "--metrics-port", str(free_port())] if command == ["worker"] else []
    started = time.monotonic()
    result = ns.shoppulse(*command, "--config", config, *extra, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert (
        f"The Kafka broker at {kafka_broker.sasl_bootstrap} rejected the SASL credentials of user `shoppulse` "
        "(SCRAM-SHA-512)" in result.stderr
    ), result.stderr
    assert "security.sasl_password" in result.stderr
    assert elapsed < 30, f"took {elapsed:.1f} s"
