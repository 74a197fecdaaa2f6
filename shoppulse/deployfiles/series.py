"""The Prometheus names the alert rules and the dashboards share: the workers' scrape job, the
freshness gauge, and the recording rules (deploy/prometheus/rules.yml) both read."""

JOB = "shoppulse"  # the Prometheus scrape job of the workers
FRESHNESS = "shoppulse_last_closed_window_end_timestamp_seconds"

# Recording rules (alerts.py `recording_rules`) that panels share with alerts.
CONVERSION_15M = "job:shoppulse_conversion:ratio_rate15m"
DEAD_LETTER_SHARE_5M = "job:shoppulse_dead_letters:ratio_rate5m"
DEAD_LETTER_GOAL = 0.01  # share of the events read that may go to the dead-letter topic
