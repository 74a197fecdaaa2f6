#!/usr/bin/env bash
# Prometheus and Alertmanager from Debian (brings promtool and amtool): the tests check
# metric names and alert rules with them and run a real Prometheus. The demo uses
# Prometheus when it is on PATH but does not need it.
set -euo pipefail
if command -v promtool >/dev/null && command -v amtool >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing prometheus and prometheus-alertmanager (apt-get)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q prometheus prometheus-alertmanager >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q prometheus prometheus-alertmanager >/dev/null; }
else
  echo "Prometheus is needed for the tests: apt-get install prometheus prometheus-alertmanager" >&2
  exit 1
fi
