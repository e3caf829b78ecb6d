"""Airflow notifiers of the provider (docs/metrics.md)."""
