#!/usr/bin/env bash
# Creates .venv with shoppulse and its test tools, and fetches the Kafka broker jars (Maven).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v java >/dev/null || { echo "Java 17+ is needed: apt-get install openjdk-17-jre-headless" >&2; exit 1; }
command -v mvn >/dev/null || { echo "Maven is needed: apt-get install maven" >&2; exit 1; }
# Prometheus and Alertmanager (promtool, amtool): the demo starts Prometheus when present,
# and the tests check metric names and alert rules with promtool.
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing prometheus and prometheus-alertmanager from Debian (apt-get)..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus prometheus-alertmanager >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus prometheus-alertmanager >/dev/null; } \
      || echo "warning: could not install prometheus; the demo runs without it, but the promtool tests will fail" >&2
  else
    echo "note: promtool not found; install prometheus (apt-get install prometheus prometheus-alertmanager)" >&2
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test]"
.venv/bin/python -c "from shoppulse.cli import fetch_jars_with_progress; fetch_jars_with_progress()"
