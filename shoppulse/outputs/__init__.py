"""Where results go at run time: Prometheus metrics and the kpi-results publisher. The deploy
files generated from the KPI catalogue (alert rules, dashboards) are in shoppulse/deployfiles/."""
