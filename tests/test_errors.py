"""Expected failures end with a message saying what to do and exit code 2, never a traceback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import DATASETS

from shoppulse.kafka.broker import free_port

SAMPLE = DATASETS / "uci-online-retail-2010-dec-head.csv"


def _run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPPULSE_")}
    return subprocess.run(
        [sys.executable, "-m", "shoppulse.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _assert_clean_failure(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in:\n{result.stderr}"


# ------------------------------------------------------------------ broker unreachable


@pytest.mark.parametrize(
    "command",
    [
        ["replay", "online-retail", str(SAMPLE), "--quiet"],
        ["worker", "--metrics-port", "0", "--data-dir", "{tmp}"],
        ["tail", "--json"],
    ],
    ids=lambda c: c[0],
)
def test_broker_unreachable_names_the_address_and_what_to_try(command, tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    result = _run(*args, "--broker", address, timeout=90)
    _assert_clean_failure(
        result,
        f"Cannot reach the Kafka broker at {address}",
        "shoppulse kafka",
        "--broker",
        "check the [security] settings",
    )


# ------------------------------------------------------------------ Java / Maven missing


def test_maven_missing_says_how_to_install(tmp_path):
    env = {"PATH": str(tmp_path / "empty-bin"), "SHOPPULSE_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    result = _run("kafka", "--port", "0", env=env)
    _assert_clean_failure(result, "`mvn` was not found on PATH", "apt-get install maven", "brew install maven")


def test_java_missing_says_how_to_install(tmp_path):
    mvn = shutil.which("mvn")
    if not mvn:
        pytest.skip("needs Maven on PATH (to find it but not Java)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mvn").symlink_to(mvn)  # Maven present, Java absent: the jar fetch must stop before running it
    env = {"PATH": str(bin_dir), "SHOPPULSE_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    result = _run("kafka", "--port", "0", env=env)
    _assert_clean_failure(result, "`java` was not found on PATH", "openjdk-17-jre-headless", "--broker HOST:PORT")


# ------------------------------------------------------------------ port taken


@pytest.mark.integration
def test_kafka_port_taken_names_the_port_and_the_flag(kafka_broker):
    result = _run("kafka", "--port", str(kafka_broker.port))  # the test broker holds it
    _assert_clean_failure(result, f"Port {kafka_broker.port} on 127.0.0.1 is already taken", "--port N", "--port 0")


@pytest.mark.integration
def test_metrics_port_taken_names_the_port_and_the_flag(namespace, tmp_path):
    ns = namespace()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "shoppulse.cli",
                "worker",
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(port),
                "--data-dir",
                str(tmp_path / "w"),
            ],
            env=ns.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    _assert_clean_failure(result, f"Port {port} on 127.0.0.1 is taken", "--metrics-port N")


# ------------------------------------------------------------------ bad config


def test_bad_config_file_names_the_key(tmp_path):
    config = tmp_path / "shoppulse.toml"
    config.write_text('partitions = "many"\ngrace_secnds = 10\n')
    result = _run("worker", "--config", str(config), "--data-dir", str(tmp_path / "w"))
    _assert_clean_failure(
        result,
        "2 problems",
        '`partitions`: expected an integer, got a string ("many")',
        "`grace_secnds`: unknown key (did you mean `grace_seconds`?)",
    )


def test_bad_environment_variable_names_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPPULSE_")}
    env["SHOPPULSE_SECURITY__SECURITY_PROTOCOL"] = "TLS"
    result = _run("replay", "online-retail", str(SAMPLE), "--quiet", env=env)
    _assert_clean_failure(result, "SHOPPULSE_SECURITY__SECURITY_PROTOCOL: 'TLS' is not allowed", "SASL_SSL")


def test_missing_config_file(tmp_path):
    result = _run("tail", "--config", str(tmp_path / "nope.toml"))
    _assert_clean_failure(result, f"{tmp_path / 'nope.toml'}: no such config file")
