"""`shoppulse demo` end to end, in non-TTY mode: closed windows are printed as lines, a
checkout outage reads as conversion 0, and nothing it started is left running."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import psutil
import pytest

pytestmark = pytest.mark.integration

LINE = re.compile(r"^(\S+Z) 1m (.*) scenario=(\S+)$")


def _run_demo(*args: str, timeout: float) -> tuple[list[tuple[float, dict]], str, dict[int, str]]:
    """Run the demo; return (seconds since start, fields) per window line, stderr, and the
    pids of every process it started (sampled while it ran)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shoppulse.cli",
            "demo",
            "--no-tty",
            "--metrics-port",
            "0",
            "--prometheus-port",
            "0",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    descendants: dict[int, str] = {}
    done = threading.Event()

    def watch() -> None:
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                for child in parent.children(recursive=True):
                    if child.pid not in descendants:
                        descendants[child.pid] = " ".join(child.cmdline())
            except psutil.NoSuchProcess:
                return
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    lines: list[tuple[float, dict]] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        match = LINE.match(raw.strip())
        if match:
            fields = dict(part.split("=", 1) for part in match.group(2).split(" ") if "=" in part)
            fields["scenario"] = match.group(3)
            fields["start"] = match.group(1)
            lines.append((time.monotonic() - started, fields))
    proc.wait(timeout)
    done.set()
    watcher.join(5)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0, stderr
    return lines, stderr, descendants


def _alive(pids) -> list[str]:
    alive = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(process.cmdline())[:200])
        except psutil.NoSuchProcess:
            pass
    return alive


def test_checkout_outage_shows_zero_conversion_and_leaves_nothing_running(kafka_broker):
    # A window's session KPIs are final once its longest session has ended (demo shoppers: up
    # to about 75 s), so the first window with traffic closes up to about 160 s after the start.
    lines, stderr, started = _run_demo(
        "--broker", kafka_broker.bootstrap, "--duration", "210", "--scenario", "checkout-outage", timeout=300
    )
    with_sessions = [fields for _, fields in lines if fields["sessions"] != "0"]
    assert with_sessions, f"no closed window with sessions in 210 s:\n{lines}\n{stderr[-3000:]}"
    for fields in with_sessions:
        assert fields["scenario"] == "checkout-outage"
        assert fields["conversion"] == "0.0%", fields
        assert fields["orders"] == "0", fields
    assert any("shoppulse.cli worker" in cmd for cmd in started.values()), started
    assert not _alive(started), _alive(started)


def test_fresh_demo_closes_windows_with_sessions_orders_and_tickets_within_3_minutes():
    lines, stderr, started = _run_demo("--duration", "200", "--rate", "40", timeout=320)
    busy = [(t, f) for t, f in lines if f["sessions"] != "0" and f["orders"] != "0" and f["tickets"] != "0"]
    assert busy, f"no window with sessions, orders and tickets:\n{lines}\n{stderr[-3000:]}"
    seconds, fields = busy[0]
    assert seconds <= 180
    assert float(fields["conversion"].rstrip("%")) > 0, fields
    assert any("kafka" in cmd and "java" in cmd for cmd in started.values()), started
    assert any("shoppulse.cli worker" in cmd for cmd in started.values()), started
    assert not _alive(started), _alive(started)


def test_keys_switch_the_scenario_and_quit_in_a_terminal(kafka_broker):
    """In a terminal (a pty here) the live view runs: `s` moves to the next scenario, shown in
    the status line, and `q` quits cleanly, leaving nothing running."""
    import os
    import pty
    import select

    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "LINES": "50", "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shoppulse.cli",
            "demo",
            "--broker",
            kafka_broker.bootstrap,
            "--metrics-port",
            "0",
            "--no-prometheus",
            "--duration",
            "240",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    screen = b""
    descendants: dict[int, str] = {}

    def read_until(text: str, timeout: float) -> None:
        nonlocal screen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in psutil.Process(proc.pid).children(recursive=True):
                descendants.setdefault(child.pid, " ".join(child.cmdline()))
            if select.select([master], [], [], 0.5)[0]:
                try:
                    screen += os.read(master, 65536)
                except OSError:  # the demo closed the terminal
                    break
            if text in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))[-20000:]:
                return
        raise AssertionError(f"{text!r} not shown within {timeout} s; screen ends:\n{screen[-3000:]!r}")

    try:
        read_until("scenario: normal", 120)
        os.write(master, b"s")
        read_until("scenario: checkout-outage", 10)
        os.write(master, b"s")
        read_until("scenario: support-surge", 10)
        os.write(master, b"q")
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert any("shoppulse.cli worker" in cmd for cmd in descendants.values()), descendants
    assert not _alive(descendants), _alive(descendants)
