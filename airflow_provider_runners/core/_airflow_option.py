"""One ``[runners]`` option from Airflow's config: shared by core/settings.py and its typed model."""

from __future__ import annotations


def airflow_option(key: str) -> str | None:
    """``conf.get("runners", key)``; None when unset, empty, or Airflow is not importable or configured."""
    try:
        from airflow.configuration import conf

        return conf.get("runners", key, fallback=None) or None
    except Exception:  # noqa: BLE001 - any config error means "not configured"
        return None
