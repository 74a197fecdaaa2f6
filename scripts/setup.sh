#!/usr/bin/env bash
# Creates .venv with shoppulse and its test tools, and fetches the Kafka broker jars (Maven).
# Prints a line per step and then what is ready. pip's output goes to a log file, printed
# in full only when a step fails (a successful install's setuptools notices are no news).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v java >/dev/null || { echo "Java 17+ is needed: apt-get install openjdk-17-jre-headless" >&2; exit 1; }
command -v mvn >/dev/null || { echo "Maven is needed: apt-get install maven" >&2; exit 1; }

log=$(mktemp "${TMPDIR:-/tmp}/shoppulse-setup.XXXXXX")
quietly() {  # run "$@" with its output in $log; on failure print the log and stop
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        echo "scripts/setup.sh: \`$*\` failed; its output is above and in $log" >&2
        exit 1
    fi
}

if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv…"
    quietly python3 -m venv .venv
fi
echo "Installing shoppulse and its test tools…"
quietly .venv/bin/pip install --upgrade pip
quietly .venv/bin/pip install -e ".[test]"
rm -f "$log"

.venv/bin/python - <<'EOF'
import platform
import sys
from importlib.metadata import version

from shoppulse.errors import ShoppulseError
from shoppulse.kafka.broker import KAFKA_VERSION
from shoppulse.tools.jars import fetch_jars_with_progress

print(f"Fetching the Kafka {KAFKA_VERSION} jars…", flush=True)
try:
    jars = fetch_jars_with_progress()
except ShoppulseError as exc:  # no Java or Maven, a failed download: the message says what to do
    sys.exit(f"error: {exc}")
print(
    f"Ready: .venv (shoppulse {version('shoppulse')}, Python {platform.python_version()}, pytest, ruff, mypy);"
    f" Kafka {KAFKA_VERSION} jars in {jars}.\n"
    "  Try .venv/bin/shoppulse --help, or bash scripts/demo.sh."
)
EOF
