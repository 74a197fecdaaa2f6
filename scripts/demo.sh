#!/usr/bin/env bash
# The demo: a local Kafka, the worker, and live synthetic traffic; KPIs on /metrics.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SP=.venv/bin/shoppulse
KAFKA_PORT=${KAFKA_PORT:-9092}
METRICS_PORT=${METRICS_PORT:-9464}
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
$SP kafka --port "$KAFKA_PORT" --data-dir var/kafka > var-kafka.log 2>&1 & pids+=($!)
until grep -q "ready" var-kafka.log 2>/dev/null; do
  kill -0 "${pids[0]}" 2>/dev/null || { cat var-kafka.log; exit 1; }
  sleep 0.5
done
echo "Kafka on 127.0.0.1:$KAFKA_PORT"
export SHOPPULSE_BROKER=127.0.0.1:$KAFKA_PORT SHOPPULSE_IDLE_TIMEOUT_SECONDS=10
$SP replay rees46 ../shared/datasets/rees46-2019-oct-head.csv --max-speed
$SP worker --metrics-port "$METRICS_PORT" --data-dir var/worker & pids+=($!)
echo "Metrics: http://127.0.0.1:$METRICS_PORT/metrics  (live traffic follows; Ctrl-C stops)"
$SP generate --rate "${RATE:-50}" --scenario "${SCENARIO:-normal}"
