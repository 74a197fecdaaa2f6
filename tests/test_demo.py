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
    proc = subprocess.Popen([sys.executable, "-m", "shoppulse.cli", "demo", "--no-tty", "--metrics-port", "0",
                             "--prometheus-port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
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
    lines, stderr, started = _run_demo("--broker", kafka_broker.bootstrap, "--duration", "150",
                                       "--scenario", "checkout-outage", timeout=240)  # fmt: skip
    with_sessions = [fields for _, fields in lines if fields["sessions"] != "0"]
    assert with_sessions, f"no closed window with sessions in 150 s:\n{lines}\n{stderr[-3000:]}"
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
