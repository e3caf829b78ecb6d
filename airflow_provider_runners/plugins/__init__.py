"""Airflow plugins shipped with the provider (registered through the ``airflow.plugins`` entry point)."""

from __future__ import annotations
