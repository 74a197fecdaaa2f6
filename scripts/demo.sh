#!/usr/bin/env bash
# The demo: a local Kafka, the worker, live synthetic traffic, Prometheus (when installed)
# and a live terminal view. Keys: s = next scenario, q = quit. Flags go to `shoppulse demo`
# (e.g. --scenario checkout-outage, --rate 80, --no-tty, --broker HOST:PORT).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/shoppulse demo "$@"
