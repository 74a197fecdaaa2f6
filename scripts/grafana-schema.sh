#!/usr/bin/env bash
# Regenerates grafana/schema/*.json: JSON Schemas of Grafana 11.0.0's dashboard model and of
# the options of the panel types our dashboards use, generated from the TypeScript types that
# Grafana publishes in the @grafana/schema npm package (the version matches the compose
# file's grafana/grafana:11.0.0). tests/test_dashboards.py validates every dashboard against
# them, offline. Needs node and npm; run it only when the pinned Grafana version changes.
set -euo pipefail
cd "$(dirname "$0")/.."
GRAFANA=11.0.0
OUT=grafana/schema
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null \
  && npm install --silent --no-audit --no-fund "@grafana/schema@$GRAFANA" ts-json-schema-generator@2.4.0 typescript@5.4.5)
raw="$work/node_modules/@grafana/schema/dist/esm/raw"
gen() {  # gen FILE TYPE OUT
  (cd "$work" && npx ts-json-schema-generator --path "$1" --type "$2" --no-type-check) > "$3"
}
mkdir -p "$OUT"
gen "$raw/dashboard/x/dashboard_types.gen.d.ts" Dashboard "$OUT/dashboard.json"
for panel in timeseries:TimeSeries stat:Stat bargauge:BarGauge heatmap:Heatmap; do
  name=${panel%%:*}
  file="$raw/composable/$name/panelcfg/x/${panel##*:}PanelCfg_types.gen.d.ts"
  gen "$file" Options "$OUT/$name.options.json"
  if grep -q "^export interface FieldConfig" "$file"; then
    gen "$file" FieldConfig "$OUT/$name.fieldconfig.json"
  fi
done
echo "Grafana $GRAFANA schemas written to $OUT/"
