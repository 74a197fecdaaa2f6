"""`shoppulse demo`: broker, worker, traffic, /metrics, Prometheus and a live view, on loopback.

    local Kafka (LocalKafka, or --broker) ◀── traffic generator (in-process, real time)
          │
          └──▶ shoppulse worker (child process) ──▶ kpi-results ──▶ live view (this process)
                          │ /metrics ──▶ Prometheus (child, if on PATH) ──▶ alerts ──┘

Everything it starts is stopped on exit (Ctrl-C, `q`, --duration, or a failure half-way):
children get SIGTERM, then SIGKILL after a timeout; its temporary directory is removed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson
from rich.console import Console
from rich.live import Live

from ..config import load_settings
from ..deployfiles.alerts import render_prometheus_config, render_rules
from ..errors import ShoppulseError
from ..kafka.admin import ensure_topics
from ..kafka.broker import LocalKafka, free_ports, port_in_use
from ..streams.goals import goals
from .generate import SCENARIOS, GeneratorConfig
from .generate import run as generate
from .jars import fetch_jars_with_progress
from .sink import KafkaSink
from .tail import follow_results
from .view import Board

# Short timings so that closed 1 m windows, including the session KPIs, appear within
# about two minutes: a session's KPIs are final once it has been idle for the session
# timeout, so the generated shoppers think for a median 1 s between steps instead of
# ~15 s, and a session ends after 15 s of silence instead of GA4's 30 min.
DEMO_SETTINGS = {"grace_seconds": 5.0, "idle_timeout_seconds": 10.0, "session_timeout_seconds": 15.0}
THINK_TIME_S = 1.0
STOP_TIMEOUT_S = 20.0


class DemoError(ShoppulseError):
    """An expected failure of the demo (port taken, worker died); the message says what to do."""


@dataclass(frozen=True)
class DemoOptions:
    """What `shoppulse demo` runs with; cli/demo.py makes it from the flags (and has their defaults)."""

    broker: str | None  # this Kafka (HOST:PORT) instead of a local one
    config_file: str | None  # settings file (TOML)
    scenario: str  # the scenario to start with
    rate: float  # generated events per second
    seed: int
    duration_s: float | None  # None: until Ctrl-C or `q`
    live_view: bool  # False: one line per closed 1 m window (also when stdout is not a terminal)
    metrics_port: int  # the worker's /metrics port; 0: a free one
    prometheus_port: int  # 0: a free one
    start_prometheus: bool  # when it is on PATH


def run_demo(options: DemoOptions) -> None:
    """Run the demo until Ctrl-C, `q` or `duration_s`; raises DemoError."""
    # aiokafka logs retried metadata races on freshly created topics as errors: noise here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    asyncio.run(Demo(options, Console(stderr=True)).run())


class Demo:
    def __init__(self, options: DemoOptions, console: Console):
        self.options = options
        self.console = console
        self.tty = sys.stdout.isatty() and options.live_view
        self.workdir = Path(tempfile.mkdtemp(prefix="shoppulse-demo-"))
        tag = uuid.uuid4().hex[:6]
        metrics_port, prometheus_port, self.kafka_port = free_ports(3)  # picked together: all distinct
        flags = {
            **DEMO_SETTINGS,
            "app_id": f"shoppulse-demo-{tag}",
            "metrics_port": options.metrics_port or metrics_port,
        }
        if options.broker:
            flags["broker"] = options.broker  # validated and normalised (kafka://, lists) like every setting
        self.settings = load_settings(options.config_file, flags)
        self.prometheus_port = options.prometheus_port or prometheus_port
        if options.broker:
            # A shared broker may hold earlier demos' topics: use fresh ones.
            for name in ("clickstream", "orders", "tickets", "results", "dead_letters"):
                setattr(self.settings.topics, name, f"{getattr(self.settings.topics, name)}-demo-{tag}")
        self.config = GeneratorConfig(
            rate=options.rate, seed=options.seed, scenario=options.scenario, think_time_s=THINK_TIME_S
        )
        self.scenarios: list[tuple[int, str]] = [(0, options.scenario)]  # (from epoch ms, scenario)
        self.board = Board(goals(self.settings))
        self.stop = asyncio.Event()
        self.children: list[subprocess.Popen] = []
        self.broker: LocalKafka | None = None
        self.traffic_started_ms = 0
        self.prometheus_url: str | None = None

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        tasks: list[asyncio.Task] = []
        try:
            await self._start_services()
            tasks = [asyncio.create_task(coro) for coro in (self._generate(), self._consume(), self._scrape())]
            await self._show()
        finally:
            self.stop.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError, Exception):
                    await task
            await asyncio.to_thread(self._stop_services)

    async def _start_services(self) -> None:
        s = self.settings
        if port_in_use(s.metrics_port):
            raise DemoError(
                f"Port {s.metrics_port} (the worker's /metrics) is taken; choose another with --metrics-port N."
            )
        if not self.options.broker:
            await asyncio.to_thread(fetch_jars_with_progress, self.console)
            self.broker = LocalKafka(port=self.kafka_port, data_dir=self.workdir / "kafka")
            started = time.monotonic()
            await asyncio.to_thread(self.broker.start)
            s.broker = self.broker.bootstrap
            self.console.print(f"Kafka {s.broker} ready in {time.monotonic() - started:.1f} s")
        await ensure_topics(s)
        self._start_worker()
        self._start_prometheus()
        self.console.print(
            f"worker /metrics: http://127.0.0.1:{s.metrics_port}/metrics · results topic: {s.topics.results}"
            + (f" · Prometheus: {self.prometheus_url}" if self.prometheus_url else "")
        )
        self.console.print(
            f"demo timings: grace {s.grace_seconds:g} s, idle timeout {s.idle_timeout_seconds:g} s, session timeout "
            f"{s.session_timeout_seconds:g} s (shoppers think ~{THINK_TIME_S:g} s per step): 1 m windows close about "
            "1-1.5 minutes after they end (once their longest session has ended).",
            style="dim",
        )

    def _worker_env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update({"SHOPPULSE_BROKER": s.broker, "SHOPPULSE_APP_ID": s.app_id})
        env.update({f"SHOPPULSE_{key.upper()}": str(value) for key, value in DEMO_SETTINGS.items()})
        for name in ("clickstream", "orders", "tickets", "results", "dead_letters"):
            env[f"SHOPPULSE_TOPICS__{name.upper()}"] = getattr(s.topics, name)
        return env

    def _start_worker(self) -> None:
        s = self.settings
        log = open(self.workdir / "worker.log", "wb")
        self.children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "shoppulse.cli",
                    "worker",
                    "--data-dir",
                    str(self.workdir / "worker"),
                    "--metrics-port",
                    str(s.metrics_port),
                    "--metrics-host",
                    "127.0.0.1",
                    *(["--config", self.options.config_file] if self.options.config_file else []),
                ],
                env=self._worker_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )
        self.worker = self.children[-1]

    def _start_prometheus(self) -> None:
        binary = shutil.which("prometheus")
        if not self.options.start_prometheus or binary is None:
            if binary is None:
                self.console.print("Prometheus not on PATH: no alerts (apt-get install prometheus).", style="dim")
            return
        port = self.prometheus_port
        if port_in_use(port):
            raise DemoError(
                f"Port {port} (Prometheus) is taken; choose another with --prometheus-port N, or --no-prometheus."
            )
        folder = self.workdir / "prometheus"
        folder.mkdir()
        (folder / "rules.yml").write_text(render_rules(self.settings, window="1m", for_="0s"))
        (folder / "prometheus.yml").write_text(
            render_prometheus_config(
                [f"127.0.0.1:{self.settings.metrics_port}"], [str(folder / "rules.yml")], scrape_interval="2s"
            )
        )
        log = open(folder / "prometheus.log", "wb")
        self.children.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )
        self.prometheus_url = f"http://127.0.0.1:{port}"
        self.board.alerts = []

    def _stop_services(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in self.children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self.broker is not None:
            self.broker.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------ work

    async def _generate(self) -> None:
        async with KafkaSink(self.settings) as sink:
            self.traffic_started_ms = int(time.time() * 1000)
            await generate(self.config, sink, duration_s=None, realtime=True, show_progress=False, stop=self.stop)

    async def _consume(self) -> None:
        async for record in follow_results(self.settings, from_beginning=True, stop=self.stop):
            self.board.on_record(record, time.monotonic())

    async def _scrape(self) -> None:
        metrics = f"http://127.0.0.1:{self.settings.metrics_port}/metrics"
        while not self.stop.is_set():
            with suppress(OSError):
                text = await asyncio.to_thread(_get, metrics)
                self.board.health.on_scrape(text, time.monotonic())
            if self.prometheus_url:
                with suppress(OSError, ValueError, KeyError):
                    alerts = orjson.loads(await asyncio.to_thread(_get, f"{self.prometheus_url}/api/v1/alerts"))
                    self.board.alerts = sorted(
                        f"{a['labels']['alertname']} {a['annotations'].get('summary', '')}"
                        for a in alerts["data"]["alerts"]
                        if a["state"] == "firing"
                    )
            await _sleep_or_stop(1.0, self.stop)

    def switch_scenario(self) -> None:
        name = SCENARIOS[(SCENARIOS.index(self.config.scenario) + 1) % len(SCENARIOS)]
        self.config.scenario = name
        self.scenarios.append((int(time.time() * 1000), name))

    def scenario_at(self, window_start_iso: str) -> str:
        ms = _end_ms(window_start_iso) - 60_000
        return [name for since, name in self.scenarios if since <= ms][-1]

    async def _show(self) -> None:
        started = time.monotonic()
        keys = "keys: s = next scenario, q = quit" if self.tty else ""
        restore_terminal = self._read_keys() if self.tty else None
        header = f"Kafka {self.settings.broker} · /metrics :{self.settings.metrics_port}" + (
            f" · Prometheus {self.prometheus_url}" if self.prometheus_url else ""
        )
        try:
            live = (
                Live(
                    self.board.render(header, self.config.scenario, keys),
                    console=Console(),
                    auto_refresh=False,
                    screen=False,
                )
                if self.tty
                else None
            )
            if live:
                live.start()
            try:
                while not self.stop.is_set():
                    if self.options.duration_s and time.monotonic() - started >= self.options.duration_s:
                        break
                    if self.worker.poll() is not None:
                        log = (self.workdir / "worker.log").read_text(errors="replace")[-3000:]
                        raise DemoError(
                            f"The worker exited with code {self.worker.returncode}. Its log ends with:\n{log}"
                        )
                    for window in self.board.complete(time.monotonic()):
                        if not self.tty and self.traffic_started_ms and _end_ms(window.start) > self.traffic_started_ms:
                            print(self.board.line(window, self.scenario_at(window.start)), flush=True)
                    if live:
                        live.update(self.board.render(header, self.config.scenario, keys), refresh=True)
                    await _sleep_or_stop(1.0, self.stop)
            finally:
                if live:
                    live.stop()
        finally:
            if restore_terminal:
                restore_terminal()

    def _read_keys(self):
        """Single key presses without Enter (cbreak mode); returns the terminal restorer."""
        import termios
        import tty

        fd = sys.stdin.fileno()
        if not os.isatty(fd):
            return None
        saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        loop = asyncio.get_running_loop()

        def on_key() -> None:
            key = os.read(fd, 1).decode(errors="ignore").lower()
            if key == "s":
                self.switch_scenario()
            elif key == "q":
                self.stop.set()

        loop.add_reader(fd, on_key)

        def restore() -> None:
            loop.remove_reader(fd)
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

        return restore


def _end_ms(window_start_iso: str) -> int:
    """End of the 1 m window starting at `window_start_iso`, in epoch ms."""
    return int(datetime.fromisoformat(window_start_iso.replace("Z", "+00:00")).timestamp() * 1000) + 60_000


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as response:
        return response.read().decode()


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    with suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
