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


def test_text_options_are_the_models_str_fields() -> None:
    from airflow_provider_runners.core.settings import TEXT_OPTIONS

    text = {name for name, field in RunnersSettings.model_fields.items() if field.annotation is str}
    assert set(TEXT_OPTIONS) == text


@pytest.mark.parametrize("value", ["", "some-value"])
def test_setting_reads_text_options_as_the_model_does(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from airflow_provider_runners.core.settings import TEXT_OPTIONS

    for key in sorted(TEXT_OPTIONS):
        monkeypatch.delenv(f"AIRFLOW__RUNNERS__{key.upper()}", raising=False)
        monkeypatch.setenv(f"airflow__runners__{key}", value)  # any letter case, as pydantic-settings
        assert setting(key) == (getattr(runners_settings(), key) or None) == (value or None)


def test_a_dag_file_reading_the_catalog_path_does_not_import_pydantic_settings() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from airflow_provider_runners.core.catalog import configured_catalog_path;"
        "configured_catalog_path(); print('pydantic_settings' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
