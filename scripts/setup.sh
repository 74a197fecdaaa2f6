#!/usr/bin/env bash
# Creates .venv with shoppulse and its test tools, and fetches the Kafka broker jars (Maven).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v java >/dev/null || { echo "Java 17+ is needed: apt-get install openjdk-17-jre-headless" >&2; exit 1; }
command -v mvn >/dev/null || { echo "Maven is needed: apt-get install maven" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test]"
.venv/bin/python -c "from shoppulse.cli import fetch_jars_with_progress; fetch_jars_with_progress()"
