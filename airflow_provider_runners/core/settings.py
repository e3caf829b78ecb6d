"""The ``[runners]`` section of the Airflow config as one typed object.

Read through Airflow's config (airflow.cfg, ``AIRFLOW__RUNNERS__<KEY>`` environment variables,
secrets) — the options and their meaning are declared in ``get_provider_info.py`` ("config").
An ``AIRFLOW__RUNNERS__<KEY>`` variable wins even when Airflow's config was loaded before it
was set (tests, the CLI). Read fresh on every call: it is cheap and the environment may change.
"""

from __future__ import annotations

from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class _AirflowConfig(PydanticBaseSettingsSource):
    """``conf.get("runners", key)``; nothing when Airflow is not importable or not configured."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        try:
            from airflow.configuration import conf

            return conf.get("runners", field_name, fallback=None) or None, field_name, False
        except Exception:  # noqa: BLE001 - any config error means "not configured"
            return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                found[key] = value
        return found


class RunnersSettings(BaseSettings):
    """``[runners]``: catalog, environment, evidence ledger, live-runner index, reaper, link templates."""

    model_config = SettingsConfigDict(env_prefix="AIRFLOW__RUNNERS__", case_sensitive=False, extra="ignore")

    catalog_path: str = ""
    environment: str = ""
    evidence_path: str = ""
    evidence_conn_id: str = ""
    registry: str = ""
    registry_conn_id: str = ""
    registry_namespace: str = ""
    reaper_conn_ids: str = ""
    #: Registry heartbeats (governance/heartbeat.py): every interval from the runner's holder;
    #: the reaper ends a held runner whose record saw none for expiry seconds.
    heartbeat_interval: float = 30.0
    heartbeat_expiry: float = 3600.0
    pod_link_template: str = ""
    bench_link_template: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _AirflowConfig(settings_cls)


def runners_settings() -> RunnersSettings:
    """The ``[runners]`` settings as they are now."""
    return RunnersSettings()


def setting(key: str) -> str | None:
    """One ``[runners]`` option; None when unset or empty."""
    return getattr(runners_settings(), key) or None
