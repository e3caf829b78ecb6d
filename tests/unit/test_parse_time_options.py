"""Parse-time options check: ``spec.backend`` names the backend whose checks run in the DAG
processor; without it, some backend serving the runner class must accept the options."""

from __future__ import annotations

from datetime import datetime

import pytest

from airflow_provider_runners.backends.registry import check_spec
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import RunnerSpecError


def resolved(**fields: object):
    spec = RunnerSpec.parse({"tags": {"tenant": "qa"}, **fields})
    return resolve_spec(spec, backend=spec.backend)


def test_named_backend_checks_its_options_model_naming_field_value_and_allowed() -> None:
    with pytest.raises(RunnerSpecError) as info:
        check_spec(
            resolved(
                runner_class="dedicated_host", profile="Large", backend="ec2", options={"teardown": "stop"}
            )
        )
    message = str(info.value)
    assert "spec.options.teardown" in message
    assert "'stop'" in message
    assert "'terminate'" in message
    assert "'pool'" in message


def test_named_backend_refuses_unknown_options_listing_the_allowed_ones() -> None:
    with pytest.raises(RunnerSpecError) as info:
        check_spec(
            resolved(runner_class="dask_cluster", profile="small", backend="local_dask", options={"gpus": 1})
        )
    assert "spec.options.gpus" in str(info.value)
    assert "allowed options: ['memory_limit', 'threads_per_worker', 'workers']" in str(info.value)


def test_named_backend_runs_its_deeper_checks() -> None:
    with pytest.raises(RunnerSpecError, match=r"spec.options.workers: 40 is out of range"):
        check_spec(
            resolved(
                runner_class="dask_cluster",
                profile="standard",
                environment="dev",
                backend="dataproc_dask",
                options={"workers": 40},
            )
        )


def test_unknown_backend_and_wrong_runner_class_are_errors() -> None:
    with pytest.raises(
        RunnerSpecError, match=r"spec.backend: 'nope' is not an installed backend; allowed: \["
    ):
        check_spec(resolved(runner_class="dask_cluster", profile="small", backend="nope"))
    with pytest.raises(RunnerSpecError, match=r"'pod' is not served by backend 'ec2'"):
        check_spec(resolved(runner_class="pod", profile="small", environment="dev", backend="ec2"))


def test_without_a_name_some_backend_of_the_runner_class_must_accept_the_options() -> None:
    # workers: local_dask and dataproc_dask both take it; the Connection decides at run time
    assert check_spec(resolved(runner_class="dask_cluster", profile="small", options={"workers": 3})) is None
    with pytest.raises(RunnerSpecError) as info:
        check_spec(resolved(runner_class="dask_cluster", profile="small", options={"gpus": 1}))
    assert "no installed backend for runner_class 'dask_cluster' accepts them" in str(info.value)
    assert "'dataproc_dask'" in str(info.value)
    assert "'local_dask'" in str(info.value)


def test_a_runner_class_with_one_backend_is_checked_by_it() -> None:
    cls = check_spec(
        resolved(runner_class="pod", profile="small", environment="dev", options={"command": "true"})
    )
    assert cls is not None
    assert cls.name == "kubernetes"
    with pytest.raises(RunnerSpecError, match=r"spec.options.mode"):
        check_spec(
            resolved(runner_class="pod", profile="small", environment="dev", options={"mode": "daemon"})
        )


def test_provision_operator_checks_at_construction_and_creates_nothing() -> None:
    from airflow.sdk import DAG

    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator

    with DAG("parse_check", schedule=None, start_date=datetime(2026, 1, 1)):
        with pytest.raises(RunnerSpecError, match=r"spec.options.teardown"):
            ProvisionRunnerOperator(
                task_id="p",
                spec={
                    "runner_class": "dedicated_host",
                    "profile": "Large",
                    "backend": "ec2",
                    "tags": {"tenant": "qa"},
                    "options": {"teardown": "stop"},
                },
            )
