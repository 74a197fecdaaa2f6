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
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
