"""Generators of the deploy files, from the KPI catalogue and its goals: the Prometheus rules
and config (deploy/prometheus/, alerts.py) and the Grafana dashboards (grafana/dashboards/,
dashboards.py). Tests keep the checked-in files equal to their output."""
