#!/usr/bin/env bash
# The test command: unit tests and integration tests against a real Kafka broker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-prometheus.sh
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
