"""Where results go: Prometheus metrics, the kpi-results publisher, and the alert rules and
dashboards generated from the KPI catalogue."""
