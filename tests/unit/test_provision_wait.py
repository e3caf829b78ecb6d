"""The provision operator's wait in the task (deferrable=False) decides as the trigger does
(core/waiting.py): transient status errors keep it waiting, a permanent one fails it with the
backend's message and ends the runner, the deadline is read from the operator's clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from airflow_provider_runners.backends.ec2.errors import EC2_ERRORS
from airflow_provider_runners.core.backend import RunnerStatus
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.exceptions import ProvisionError
from airflow_provider_runners.testing.memory import InMemoryBackend

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    response: Any = {
        "Error": {"Code": code, "Message": "says AWS"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "DescribeInstances")


class Flaky(InMemoryBackend):
    """The in-memory backend with the ec2 error map; ``status`` raises the queued errors first."""

    error_map = EC2_ERRORS
    errors: ClassVar[list[Exception]] = []

    def status(self, handle: RunnerHandle) -> RunnerStatus:
        if Flaky.errors:
            self.cloud.calls["status"] += 1
            raise Flaky.errors.pop(0)
        return super().status(handle)


class _TI:
    dag_id, run_id, task_id, map_index = "etl", "manual__1", "host.provision", -1
    try_number = 1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[Flaky]:
    from airflow_provider_runners.backends import registry
    from airflow_provider_runners.operators import provision
    from airflow_provider_runners.testing.contract import use_backend

    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", f"sqlite:///{tmp_path}/registry.sqlite")
    backend = use_backend(monkeypatch, "runners_memory", Flaky())
    monkeypatch.setitem(registry.backend_classes(), Flaky.conn_type, Flaky)  # spec.backend: memory
    monkeypatch.setattr(provision, "get_backend", lambda conn_id: backend)
    Flaky.errors = []
    yield backend
    Flaky.errors = []


def operator(**kwargs: Any) -> Any:
    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator

    return ProvisionRunnerOperator(
        task_id="provision",
        conn_id="runners_memory",
        spec={
            "runner_class": "dedicated_host",
            "backend": "memory",
            "profile": "Large",
            "tags": {"tenant": "t"},
            **kwargs,
        },
        deferrable=False,
        poll_interval=0.01,
    )


def test_transient_status_errors_keep_the_wait_going(flaky: Flaky) -> None:
    Flaky.errors = [client_error("RequestLimitExceeded", 503), client_error("InternalError", 500)]
    ti = _TI()
    handle = operator(options={"ready_after_polls": 1}).execute({"ti": ti})
    assert handle["resource_id"].startswith("mem-")
    assert flaky.cloud.calls["status"] == 4  # 2 throttled, PENDING, READY
    assert flaky.cloud.calls["teardown"] == 0


def test_a_permanent_status_error_fails_with_the_backends_message_and_ends_the_runner(flaky: Flaky) -> None:
    Flaky.errors = [client_error("UnauthorizedOperation", 403)]
    ti = _TI()
    with pytest.raises(
        ProvisionError, match=r"status check failed permanently: ClientError: .*UnauthorizedOperation"
    ):
        operator(options={"ready_after_polls": 5}).execute({"ti": ti})
    assert flaky.cloud.calls["status"] == 1  # not retried
    assert flaky.cloud.calls["teardown"] == 1
    assert flaky.cloud.runners == {}


def test_the_deadline_is_read_from_the_operators_clock(flaky: Flaky) -> None:
    times = iter([T0, T0 + timedelta(hours=1)])  # the deadline is set at T0; the first poll is an hour late
    op = operator(options={"ready_after_polls": 1000})
    op.clock = lambda: next(times, T0 + timedelta(hours=1))
    with pytest.raises(
        ProvisionError, match=r"not ready by 2026-05-01T12:30:00\+00:00 \(last: 1000 polls to go\)"
    ):
        op.execute({"ti": _TI()})
    assert flaky.cloud.calls["status"] == 1
    assert flaky.cloud.calls["teardown"] == 1
