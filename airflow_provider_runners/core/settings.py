"""The ``[runners]`` section of the Airflow config as one typed object.

Read through Airflow's config (airflow.cfg, ``AIRFLOW__RUNNERS__<KEY>`` environment variables,
secrets) — the options and their meaning are declared in ``get_provider_info.py`` ("config").
An ``AIRFLOW__RUNNERS__<KEY>`` variable wins even when Airflow's config was loaded before it
was set (tests, the CLI). Read fresh on every call: it is cheap and the environment may change.

:func:`setting` reads a text option without pydantic-settings (about 0.03 s to import in a
dag-processor fork, docs/benchmarks.md "Parse time"): DAG files read ``catalog_path`` and
``environment`` at parse time. The typed model (:class:`RunnersSettings`) is for the rest.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from airflow_provider_runners.core._airflow_option import airflow_option

if TYPE_CHECKING:
    from airflow_provider_runners.core._settings_model import RunnersSettings

__all__ = ["TEXT_OPTIONS", "RunnersSettings", "runners_settings", "setting"]

#: The text options of ``[runners]``: :func:`setting` reads them without the model
#: (tests/unit/test_settings.py checks they are exactly the model's ``str`` fields).
TEXT_OPTIONS = frozenset(
    {
        "catalog_path",
        "environment",
        "evidence_path",
        "evidence_conn_id",
        "registry",
        "registry_conn_id",
        "registry_namespace",
        "reaper_conn_ids",
        "pod_link_template",
        "bench_link_template",
    }
)


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


def environment_option(key: str) -> tuple[bool, str]:
    """``AIRFLOW__RUNNERS__<KEY>`` in any letter case, as pydantic-settings matches it: (set?, value)."""
    wanted = f"AIRFLOW__RUNNERS__{key}".upper()
    if wanted in os.environ:
        return True, os.environ[wanted]
    for name, value in os.environ.items():
        if name.upper() == wanted:
            return True, value
    return False, ""


def setting(key: str) -> str | None:
    """One ``[runners]`` option; None when unset or empty.

    A text option: the environment variable when set (also when empty), else Airflow's config —
    the same order and result as :class:`RunnersSettings`, without importing it."""
    if key not in TEXT_OPTIONS:
        return getattr(runners_settings(), key) or None
    found, value = environment_option(key)
    if found:
        return value or None
    return airflow_option(key)
