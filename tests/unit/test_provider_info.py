from __future__ import annotations

import copy
import importlib
import json
from importlib.metadata import distribution, entry_points
from pathlib import Path
from typing import Any

import airflow
import jsonschema
import pytest

import airflow_provider_runners
from airflow_provider_runners.backends.registry import ENTRY_POINT_GROUP, backend_class
from airflow_provider_runners.get_provider_info import get_provider_info

SCHEMA_PATH = Path(airflow.__file__).parent / "provider_info.schema.json"


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def info() -> dict[str, Any]:
    return get_provider_info()


def test_provider_info_matches_airflow_schema(validator: Any, info: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(info)]
    assert errors == []


def test_schema_check_is_not_vacuous(validator: Any, info: dict[str, Any]) -> None:
    broken = copy.deepcopy(info)
    del broken["connection-types"][0]["hook-class-name"]
    broken["hooks"][0]["python-modules"] = "not-a-list"
    assert len(list(validator.iter_errors(broken))) >= 2


def test_provider_info_is_json_and_versioned(info: dict[str, Any]) -> None:
    assert json.loads(json.dumps(info)) == info
    assert info["package-name"] == distribution("airflow-provider-runners").metadata["Name"]
    assert info["versions"][0] == airflow_provider_runners.__version__
    assert distribution("airflow-provider-runners").version == airflow_provider_runners.__version__


def _python_modules(info: dict[str, Any]) -> list[str]:
    return [
        module
        for section in ("operators", "hooks", "triggers", "sensors")
        for e in info[section]
        for module in e["python-modules"]
    ]


def test_every_listed_python_module_imports(info: dict[str, Any]) -> None:
    modules = _python_modules(info)
    assert "airflow_provider_runners.triggers.readiness" in modules
    assert "airflow_provider_runners.sensors.runners" in modules
    for module in modules:
        importlib.import_module(module)


def test_every_hook_class_imports_and_matches_its_connection_type(info: dict[str, Any]) -> None:
    assert info["connection-types"]
    for conn in info["connection-types"]:
        module, _, name = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert hook.conn_type == conn["connection-type"]
        assert hook.hook_name == conn["hook-name"]
        # Every connection type the UI offers must select a runner backend.
        assert backend_class(conn["connection-type"]).conn_type == conn["connection-type"]


def test_config_options_have_string_defaults(info: dict[str, Any]) -> None:
    options = info["config"]["runners"]["options"]
    assert set(options) == {
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
        "heartbeat_interval",
        "heartbeat_expiry",
    }
    for option in options.values():
        assert isinstance(option["default"], str)


# -- installed metadata ------------------------------------------------------------------------
def test_provider_entry_point_is_installed() -> None:
    (ep,) = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_runners")
    ]
    assert ep.value == "airflow_provider_runners.get_provider_info:get_provider_info"
    assert ep.load() is get_provider_info


def test_console_script_is_installed() -> None:
    (ep,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "airflow-runners"]
    assert ep.value == "airflow_provider_runners.cli:main"
    from airflow_provider_runners.cli import main

    assert ep.load() is main


def test_backend_entry_point_is_installed() -> None:
    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert "local_dask" in eps
    from airflow_provider_runners.backends.local_dask.backend import LocalDaskBackend

    assert eps["local_dask"].load() is LocalDaskBackend


def test_installed_entry_points_belong_to_this_distribution() -> None:
    groups = {(ep.group, ep.name) for ep in distribution("airflow-provider-runners").entry_points}
    assert groups >= {
        ("apache_airflow_provider", "provider_info"),
        ("console_scripts", "airflow-runners"),
        (ENTRY_POINT_GROUP, "local_dask"),
    }


def test_airflow_discovers_the_provider() -> None:
    from airflow.providers_manager import ProvidersManager

    providers = ProvidersManager().providers
    assert "airflow-provider-runners" in providers
    assert providers["airflow-provider-runners"].version == airflow_provider_runners.__version__


def test_task_decorators_import(info: dict[str, Any]) -> None:
    names = {d["name"]: d["class-name"] for d in info["task-decorators"]}
    assert set(names) == {"runner"}
    module, _, name = names["runner"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


def test_connection_types_are_generated_from_the_backend_classes(info: dict[str, Any]) -> None:
    from airflow_provider_runners.backends.registry import builtin_backend_classes
    from airflow_provider_runners.hooks.runner import RunnerHook, hook_class

    classes = builtin_backend_classes()
    # One per entry point this distribution declares: a new backend adds its line, not a count here.
    declared = {
        ep.name
        for ep in distribution("airflow-provider-runners").entry_points
        if ep.group == ENTRY_POINT_GROUP
    }
    assert {cls.name for cls in classes} == declared
    assert {"local_dask", "local_host", "ec2", "ssh"} <= declared
    assert info["connection-types"] == [cls.connection_type_info() for cls in classes]
    for cls in classes:
        hook = hook_class(cls)
        assert issubclass(hook, RunnerHook)
        assert (hook.conn_type, hook.hook_name, hook.backend_class) == (cls.conn_type, cls.hook_name, cls)
        assert cls.hook_class_name() == f"{hook.__module__}.{hook.__name__}"


def test_airflow_reads_the_generated_connection_forms() -> None:
    """Real ProvidersManager: hook names, hidden fields, relabeling and conn-fields of each type."""
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    behaviours = pm.field_behaviours
    assert behaviours["runners_labgrid"]["hidden_fields"] == ["login", "schema", "password"]
    assert behaviours["runners_labgrid"]["relabeling"]["host"] == "Coordinator host"
    assert behaviours["runners_kubernetes"]["relabeling"]["password"] == "Bearer token (optional)"
    widgets = pm.connection_form_widgets
    region = widgets["extra__runners_ec2__region_name"]
    assert region.field["schema"]["title"] == "Region"
    retries = widgets["extra__runners_bench_http__retries"]
    assert (retries.field["value"], retries.field["schema"]["type"]) == (3, ["integer", "null"])
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    assert ProvidersManagerTaskRuntime().hooks["runners_ec2"].hook_name == "Runners: EC2 dedicated host"
