"""Sensor and deferrable defaults that need no platform: parse-time checks, the callable queue
sensor (pokes in the task), and ``[operators] default_deferrable``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_runners.defaults import default_deferrable
from airflow_provider_runners.exceptions import RunnerSpecError
from airflow_provider_runners.sensors.runners import (
    BenchAvailableSensor,
    RunnerQueueDepthSensor,
    RunnerReadySensor,
)

SPEC = {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}}


def test_bench_sensor_checks_its_filters_when_the_dag_is_parsed() -> None:
    with pytest.raises(
        RunnerSpecError, match=r"BenchAvailableSensor\('wait'\).tags: key 'Board' is not allowed"
    ):
        BenchAvailableSensor(task_id="wait", conn_id="runners_bench", tags={"Board": "imx8"})
    with pytest.raises(RunnerSpecError, match="needs 'place'"):
        BenchAvailableSensor(task_id="wait", conn_id="runners_bench")


def test_runner_sensor_needs_exactly_one_way_to_name_the_runner() -> None:
    with pytest.raises(ValueError, match="exactly one of handle=, lineage= or lineage_key="):
        RunnerReadySensor(task_id="wait")
    with pytest.raises(ValueError, match="needs 'task_id'"):
        RunnerReadySensor(task_id="wait", lineage={"dag_id": "owner"})


def test_queue_sensor_with_a_callable_pokes_in_the_task_until_the_backlog_is_there() -> None:
    depths = iter([0, 3, 12])
    sensor = RunnerQueueDepthSensor(
        task_id="wait", queue_depth=lambda: next(depths), min_messages=10, poke_interval=0.01, deferrable=True
    )
    assert sensor.deferrable is False  # a callable cannot travel to the triggerer
    context: dict[str, Any] = {}
    assert sensor.execute(context) == 12
    with pytest.raises(ValueError, match="exactly one of queue_url="):
        RunnerQueueDepthSensor(task_id="w", queue_url="https://sqs/q", queue_depth=lambda: 1)


def test_queue_sensor_times_out_when_the_backlog_never_comes() -> None:
    from airflow.sdk.exceptions import AirflowSensorTimeout

    sensor = RunnerQueueDepthSensor(
        task_id="wait",
        queue_depth=lambda: 1,
        min_messages=5,
        poke_interval=0.01,
        timeout=timedelta(seconds=0.1),
    )
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute({})


@pytest.mark.parametrize(
    ("env", "fallback", "expected"),
    [(None, True, True), (None, False, False), ("false", True, False), ("true", False, True)],
)
def test_default_deferrable_follows_an_explicit_operators_setting(
    env: str | None, fallback: bool, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env is None:
        monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", env)
    assert default_deferrable(fallback) is expected


def test_provision_and_sensors_take_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator

    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    assert ProvisionRunnerOperator(task_id="p", spec=SPEC).deferrable is True  # today's behaviour
    assert RunnerReadySensor(task_id="s", lineage_key="rl0").deferrable is True
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert ProvisionRunnerOperator(task_id="p", spec=SPEC).deferrable is False
    assert RunnerReadySensor(task_id="s", lineage_key="rl0").deferrable is False
    assert ProvisionRunnerOperator(task_id="p", spec=SPEC, deferrable=True).deferrable is True


def test_the_false_airflow_writes_into_a_generated_airflow_cfg_keeps_deferral_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Airflow writes ``default_deferrable = false`` into the airflow.cfg it generates: that is not a
    choice, so provisions still defer (the real deployment's provisions never deferred before)."""
    from airflow.configuration import conf

    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    monkeypatch.setattr(conf, "getboolean", lambda section, key, fallback=None: False)
    assert default_deferrable(True) is True
    monkeypatch.setattr(conf, "getboolean", lambda section, key, fallback=None: True)
    assert default_deferrable(False) is True
