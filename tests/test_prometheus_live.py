"""A real Prometheus scraping a real worker, with the generated alert rules: the target is up,
a KPI gauge reads the same in Prometheus as on /metrics, and a checkout outage fires the
conversion goal alert."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoppulse.config import apply_overrides, env_overrides
from shoppulse.kafka.broker import free_port
from shoppulse.outputs.alerts import render_prometheus_config, render_rules
from shoppulse.settings import Settings
from shoppulse.tools.generate import GeneratorConfig
from shoppulse.tools.generate import run as generate
from shoppulse.tools.sink import KafkaSink

pytestmark = pytest.mark.integration

GAUGE = "shoppulse_sessions_per_window"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def _api(base: str, path: str, **params: str) -> dict:
    body = json.loads(_get(f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"))
    assert body["status"] == "success", body
    return body["data"]


class LiveTraffic(threading.Thread):
    """The traffic generator sending in real time, in its own event loop, until stopped."""

    def __init__(self, settings: Settings, config: GeneratorConfig):
        super().__init__(daemon=True)
        self.settings, self.config = settings, config
        self.started = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._send())
        except BaseException as exc:  # reported by the test's diagnostics
            self.error = exc

    async def _send(self) -> None:
        self.loop, self.done = asyncio.get_running_loop(), asyncio.Event()
        self.started.set()
        async with KafkaSink(self.settings) as sink:
            await generate(self.config, sink, duration_s=None, realtime=True, show_progress=False, stop=self.done)

    def stop(self) -> None:
        if self.started.wait(10) and self.is_alive():
            self.loop.call_soon_threadsafe(self.done.set)
        self.join(30)


def _wait_for(what: str, check, timeout: float, diagnose):
    """Poll `check()` every second until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except OSError:  # not listening yet
            result = None
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{diagnose()}")


def test_prometheus_scrapes_the_worker_and_fires_a_goal_alert(namespace, tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus not found: scripts/setup.sh installs it (apt-get install prometheus)"
    # Short timeouts so 1 m windows, sessions included, close within seconds of their end.
    ns = namespace(grace_seconds=2, idle_timeout_seconds=2, session_timeout_seconds=15)
    worker = ns.start_worker()
    generator = LiveTraffic(
        apply_overrides(Settings(), env_overrides(ns.env), "test namespace"),
        GeneratorConfig(rate=20, seed=11, scenario="checkout-outage"),
    )
    generator.start()

    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "rules.yml").write_text(render_rules(Settings(), window="1m", for_="5s"))
    (folder / "prometheus.yml").write_text(
        render_prometheus_config([f"127.0.0.1:{worker.metrics_port}"], ["rules.yml"], scrape_interval="1s")
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    prometheus_log = open(folder / "prometheus.log", "w")
    server = subprocess.Popen(
        [
            prometheus,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=prometheus_log,
        stderr=subprocess.STDOUT,
    )

    def diagnose() -> str:
        logs = {
            "worker": ns.worker_log(),
            "generator": repr(generator.error),
            "prometheus": (folder / "prometheus.log").read_text()[-3000:],
        }
        return "\n".join(f"--- {name}\n{text}" for name, text in logs.items())

    try:

        def target_up():
            targets = _api(base, "targets")["activeTargets"]
            return [t for t in targets if t["health"] == "up" and t["labels"]["job"] == "shoppulse"]

        _wait_for("the worker target to be up", target_up, 60, diagnose)

        def same_value_in_prometheus_and_worker():
            """The overall 1 m sessions gauge, once a window has closed; it changes once a minute,
            so a scrape before and after the query that agree pin the exported value."""

            def exported() -> float | None:
                text = _get(f"http://127.0.0.1:{worker.metrics_port}/metrics").decode()
                family = next((f for f in text_string_to_metric_families(text) if f.name == GAUGE), None)
                samples = [s.value for s in family.samples if s.labels == {"window": "1m"}] if family else []
                return samples[0] if samples else None

            before = exported()
            result = _api(base, "query", query=f'{GAUGE}{{window="1m"}}')["result"]
            after = exported()
            if before is None or before != after or len(result) != 1:
                return None
            return before > 0 and float(result[0]["value"][1]) == before

        _wait_for(f"{GAUGE} in Prometheus to equal the worker's", same_value_in_prometheus_and_worker, 150, diagnose)

        def conversion_alert_firing():
            alerts = _api(base, "alerts")["alerts"]
            return [
                a
                for a in alerts
                if a["labels"]["alertname"] == "ShoppulseConversionRateBelowGoal" and a["state"] == "firing"
            ]

        firing = _wait_for("the conversion goal alert to fire", conversion_alert_firing, 180, diagnose)
        assert firing[0]["labels"]["window"] == "1m" and firing[0]["labels"]["severity"] == "warning"
        # No purchase can succeed: conversion is exactly 0 in a window with sessions.
        assert float(firing[0]["value"]) == 0.0
        assert firing[0]["annotations"]["summary"].startswith("conversion_rate is 0% in the last closed 1m window"), (
            firing
        )
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        generator.stop()
