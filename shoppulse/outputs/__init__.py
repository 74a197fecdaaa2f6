"""Where results go at run time: the sensor seam (base.py) and the Prometheus exporter, and the
kpi-results records. The deploy files generated from the KPI catalogue (alert rules,
dashboards) are in shoppulse/deployfiles/."""
