#!/usr/bin/env bash
# The test command: lint and types, unit tests, and integration tests against a real Kafka
# broker and a real Prometheus.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-prometheus.sh
echo "Checking lint, format and types (ruff, mypy)..."
.venv/bin/ruff check --quiet shoppulse tests bench scripts
.venv/bin/ruff format --check --quiet shoppulse tests bench scripts
.venv/bin/mypy
# Most of the suite's time is spent waiting on real processes (windows closing, a demo running), so
# three pytest-xdist workers (each with its own broker) fit on 2 cores; tests/conftest.py puts the
# slowest first and keeps the modules that need it on one worker. `-n 0` runs serially.
exec .venv/bin/pytest -q -p no:cacheprovider -n 3 "$@"
