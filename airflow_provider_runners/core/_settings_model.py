"""The typed model behind :mod:`airflow_provider_runners.core.settings` (pydantic-settings).

Imported only when a setting is first read, never at DAG parse time (pydantic-settings costs
about 0.1 s to import: docs/benchmarks.md, "Parse time").
"""

from __future__ import annotations

from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from airflow_provider_runners.core._airflow_option import airflow_option


class _AirflowConfig(PydanticBaseSettingsSource):
    """``conf.get("runners", key)``; nothing when Airflow is not importable or not configured."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return airflow_option(field_name), field_name, False

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
