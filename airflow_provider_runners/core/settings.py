"""The ``[runners]`` section of the Airflow config as one typed object.

Read through Airflow's config (airflow.cfg, ``AIRFLOW__RUNNERS__<KEY>`` environment variables,
secrets) — the options and their meaning are declared in ``get_provider_info.py`` ("config").
An ``AIRFLOW__RUNNERS__<KEY>`` variable wins even when Airflow's config was loaded before it
was set (tests, the CLI). Read fresh on every call: it is cheap and the environment may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_runners.core._settings_model import RunnersSettings

__all__ = ["RunnersSettings", "runners_settings", "setting"]


def __getattr__(name: str) -> Any:
    # RunnersSettings is loaded on first use: pydantic-settings is not imported at DAG parse time.
    if name == "RunnersSettings":
        from airflow_provider_runners.core._settings_model import RunnersSettings

        return RunnersSettings
    raise AttributeError(name)


def runners_settings() -> RunnersSettings:
    """The ``[runners]`` settings as they are now."""
    from airflow_provider_runners.core._settings_model import RunnersSettings

    return RunnersSettings()


def setting(key: str) -> str | None:
    """One ``[runners]`` option; None when unset or empty."""
    return getattr(runners_settings(), key) or None
