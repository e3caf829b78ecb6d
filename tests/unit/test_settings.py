"""``[runners]`` as one typed settings object: environment variables over airflow.cfg."""

from __future__ import annotations

import pytest

from airflow_provider_runners.core.settings import RunnersSettings, runners_settings, setting
from airflow_provider_runners.get_provider_info import get_provider_info


def test_every_declared_option_is_a_setting() -> None:
    declared = set(get_provider_info()["config"]["runners"]["options"])
    assert declared == set(RunnersSettings.model_fields)


def test_environment_variable_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__RUNNERS__REGISTRY_NAMESPACE", raising=False)
    assert setting("registry_namespace") is None
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY_NAMESPACE", "prod")
    assert runners_settings().registry_namespace == "prod"
    assert setting("registry_namespace") == "prod"


def test_airflow_config_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.configuration import conf

    monkeypatch.delenv("AIRFLOW__RUNNERS__REAPER_CONN_IDS", raising=False)
    if not conf.has_section("runners"):
        conf.add_section("runners")
    conf.set("runners", "reaper_conn_ids", "runners_a,runners_b")
    try:
        assert setting("reaper_conn_ids") == "runners_a,runners_b"
        monkeypatch.setenv("AIRFLOW__RUNNERS__REAPER_CONN_IDS", "runners_c")
        assert setting("reaper_conn_ids") == "runners_c"
    finally:
        conf.remove_option("runners", "reaper_conn_ids")
