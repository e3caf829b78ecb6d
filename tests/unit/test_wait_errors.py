"""What the poller, the trigger and teardown do with a backend's errors, by its error map: a
transient error keeps the wait going, a permanent one fails it with the backend's message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_runners.backends.ec2.errors import EC2_ERRORS
from airflow_provider_runners.core.backend import RunnerStatus, TeardownResult
from airflow_provider_runners.core.errors import ErrorKind
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.exceptions import RunnerStatusError
from airflow_provider_runners.governance.ending import end_runners, teardown_retrying
from airflow_provider_runners.testing.contract import use_backend
from airflow_provider_runners.triggers import poller as poller_module
from airflow_provider_runners.triggers.poller import SharedStatusPoller
from tests.unit import test_poller_trigger
from tests.unit.test_poller_trigger import (
    INTERVAL,
    FakeBackend,
    events_of,
    make_handle,
    trigger,
)

# its fixture: fresh shared pollers and a FakeBackend behind runners_fake_test (aws_like replaces it)
fake_backend = test_poller_trigger.fake_backend


def client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    response: Any = {
        "Error": {"Code": code, "Message": f"{code}: says AWS"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "DescribeInstances")


class AwsLikeBackend(FakeBackend):
    """FakeBackend with the ec2 error map, raising the botocore errors queued in ``errors`` first
    (each such call counts in ``calls`` too: one counter)."""

    error_map = EC2_ERRORS

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[Exception] = []

    def status_many(self, handles: Iterable[RunnerHandle]) -> dict[str, RunnerStatus]:
        if self.errors:
            self.calls += 1
            raise self.errors.pop(0)
        return super().status_many(handles)


@pytest.fixture(autouse=True)
def aws_like(fake_backend: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> AwsLikeBackend:
    """This test's one AwsLikeBackend, in place of the FakeBackend behind runners_fake_test."""
    monkeypatch.setattr(poller_module, "MAX_BACKOFF_S", 0.05)
    backend = AwsLikeBackend()
    use_backend(monkeypatch, "runners_fake_test", backend)
    return backend


@pytest.mark.asyncio
async def test_transient_errors_keep_the_trigger_waiting_until_ready(aws_like: AwsLikeBackend) -> None:
    aws_like.pending_polls = 1
    aws_like.errors = [client_error("RequestLimitExceeded", 503), client_error("InternalError", 500)]
    events = await asyncio.wait_for(events_of(trigger()), 10)
    assert [e.payload["status"] for e in events] == ["ready"]
    assert aws_like.calls == 4  # 2 throttled calls, PENDING, READY


@pytest.mark.asyncio
async def test_a_permanent_error_fails_the_trigger_with_the_backends_message(
    aws_like: AwsLikeBackend,
) -> None:
    aws_like.pending_polls = 1000
    aws_like.errors = [client_error("UnauthorizedOperation", 403)]
    events = await asyncio.wait_for(events_of(trigger()), 10)
    assert [e.payload["status"] for e in events] == ["failed"]
    message = events[0].payload["message"]
    assert message.startswith("status check failed permanently: ClientError:")
    assert "UnauthorizedOperation" in message
    assert aws_like.calls == 1  # no retry of a refusal
    assert aws_like.teardowns == 0  # waiting has no side effects


@pytest.mark.asyncio
async def test_a_not_found_error_fails_the_trigger_as_gone(aws_like: AwsLikeBackend) -> None:
    aws_like.pending_polls = 1000
    aws_like.errors = [client_error("InvalidInstanceID.NotFound", 400)]
    events = await asyncio.wait_for(events_of(trigger()), 10)
    assert [e.payload["status"] for e in events] == ["failed"]
    assert events[0].payload["message"].startswith("gone: ClientError:")


@pytest.mark.asyncio
async def test_transient_errors_past_the_cap_fail_every_waiter_of_the_call(aws_like: AwsLikeBackend) -> None:
    aws_like.pending_polls = 1000
    aws_like.errors = [client_error("RequestLimitExceeded", 503) for _ in range(10)]
    shared = SharedStatusPoller.for_backend(aws_like, INTERVAL)
    shared.max_transient = 3
    results = await asyncio.wait_for(
        asyncio.gather(*(shared.next_status(make_handle(n)) for n in range(3)), return_exceptions=True), 10
    )
    assert all(isinstance(r, RunnerStatusError) for r in results)
    error = results[0]
    assert isinstance(error, RunnerStatusError)
    assert (error.kind, error.errors_in_a_row) == (ErrorKind.TRANSIENT.value, 3)
    assert "RequestLimitExceeded" in str(error)
    assert aws_like.calls == 3
    assert shared.transient_errors == 2  # the third was the one too many


@pytest.mark.asyncio
async def test_the_trigger_reports_the_cap_as_a_failure(aws_like: AwsLikeBackend) -> None:
    aws_like.pending_polls = 1000
    aws_like.errors = [client_error("Throttling", 400) for _ in range(10)]
    trig = trigger(deadline=datetime.now(UTC) + timedelta(minutes=5))
    SharedStatusPoller.for_backend(aws_like, INTERVAL).max_transient = 2  # the trigger's poller
    events = await asyncio.wait_for(events_of(trig), 10)
    assert [e.payload["status"] for e in events] == ["failed"]
    assert "failed 2 times in a row (transient errors)" in events[0].payload["message"]


# -- teardown --------------------------------------------------------------------------------------
class FlakyTeardown(AwsLikeBackend):
    """Raises the errors queued in ``teardown_errors`` from ``teardown``; counts every attempt."""

    def __init__(self, *teardown_errors: Exception) -> None:
        super().__init__()
        self.teardown_errors = list(teardown_errors)

    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        self.teardowns += 1
        if self.teardown_errors:
            raise self.teardown_errors.pop(0)
        return TeardownResult(existed=True, message="terminated")


def flaky(*errors: Exception) -> FlakyTeardown:
    return FlakyTeardown(*errors)


def test_teardown_retries_transient_errors() -> None:
    slept: list[float] = []
    backend = flaky(client_error("RequestLimitExceeded", 503), client_error("InternalError", 500))
    result = teardown_retrying(backend, make_handle(), delays=[1.0, 2.0], sleep=slept.append)
    assert (result.existed, result.message) == (True, "terminated")
    assert slept == [1.0, 2.0]
    assert backend.teardowns == 3


def test_teardown_gives_up_after_its_delays_and_at_once_on_a_permanent_error() -> None:
    from botocore.exceptions import ClientError

    slept: list[float] = []
    backend = flaky(*(client_error("RequestLimitExceeded", 503) for _ in range(5)))
    with pytest.raises(ClientError, match="RequestLimitExceeded"):
        teardown_retrying(backend, make_handle(), delays=[1.0], sleep=slept.append)
    assert slept == [1.0]
    backend = flaky(client_error("UnauthorizedOperation", 403))
    with pytest.raises(ClientError, match="UnauthorizedOperation"):
        teardown_retrying(backend, make_handle(), delays=[1.0], sleep=slept.append)
    assert slept == [1.0]  # not retried


def test_teardown_of_a_runner_the_api_calls_missing_is_success() -> None:
    backend = flaky(client_error("InvalidInstanceID.NotFound", 400))
    result = teardown_retrying(backend, make_handle(), delays=[], sleep=lambda s: None)
    assert result.existed is False
    assert result.message.startswith("already gone: ClientError")


def test_end_runners_reports_a_permanent_teardown_error_with_its_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", "none")
    backend = flaky(client_error("UnauthorizedOperation", 403))
    (entry,) = end_runners(backend, [make_handle()], None, "test", sleep=lambda s: None)
    assert entry["existed"] is None
    assert entry["message"].startswith("teardown failed (permanent):")
    assert "UnauthorizedOperation" in entry["error"]


# -- sensor triggers -------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_sensor_trigger_fails_with_the_message_of_a_permanent_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_runners.triggers import sensors

    class RefusingQueue:
        """A queue-depth source whose API refuses the credentials (a permanent error)."""

        def __init__(self, aws_conn_id: str | None, poll_interval: float) -> None:
            self.poll_interval = poll_interval
            self.calls = 0

        def batch_key(self) -> str:
            return "sqs-depth:refusing"

        def status_many(self, probes: Iterable[Any]) -> dict[str, int]:
            self.calls += 1
            raise client_error("AccessDenied", 403)

        def classify_error(self, exc: BaseException) -> ErrorKind:
            return EC2_ERRORS.classify(exc)

    monkeypatch.setattr(sensors, "QueueDepthSource", RefusingQueue)
    trig = sensors.QueueDepthTrigger(
        "https://sqs/q",
        None,
        1,
        (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
        poll_interval=INTERVAL,
    )
    events = [event async for event in trig.run()]
    assert [e.payload["status"] for e in events] == ["failed"]
    assert "AccessDenied" in events[0].payload["message"]
    assert "permanent" in events[0].payload["message"]
