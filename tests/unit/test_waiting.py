"""The one readiness decision (core/waiting.py), on controlled time: no wall clock anywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_runners.core.backend import RunnerState, RunnerStatus
from airflow_provider_runners.core.errors import ErrorKind, default_kind
from airflow_provider_runners.core.waiting import ReadinessWait, Verdict, decide, decide_error

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DEADLINE = T0 + timedelta(minutes=30)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize(
    ("state", "now", "verdict", "message"),
    [
        (RunnerState.READY, T0, Verdict.READY, "up"),
        (RunnerState.READY, DEADLINE + timedelta(hours=1), Verdict.READY, "up"),  # ready beats late
        (RunnerState.FAILED, T0, Verdict.FAILED, "failed: up"),
        (RunnerState.GONE, T0, Verdict.FAILED, "gone: up"),
        (RunnerState.PENDING, T0, Verdict.WAIT, "up"),
        (RunnerState.PENDING, DEADLINE - timedelta(microseconds=1), Verdict.WAIT, "up"),
        (RunnerState.PENDING, DEADLINE, Verdict.TIMEOUT, f"not ready by {DEADLINE.isoformat()} (last: up)"),
    ],
)
def test_decide_maps_status_deadline_and_now_to_one_verdict(
    state: RunnerState, now: datetime, verdict: Verdict, message: str
) -> None:
    decision = decide(RunnerStatus(state, "up"), DEADLINE, now)
    assert decision.verdict is verdict
    assert decision.message == message
    assert decision.final is (verdict is not Verdict.WAIT)


def test_a_permanent_error_fails_at_once_with_the_backends_message() -> None:
    decision = decide_error(
        PermissionError("AccessDenied: no ec2:DescribeInstances"), ErrorKind.PERMANENT, 1, DEADLINE, T0
    )
    assert decision.verdict is Verdict.FAILED
    assert (
        decision.message
        == "status check failed permanently: PermissionError: AccessDenied: no ec2:DescribeInstances"
    )


def test_a_not_found_error_fails_as_gone() -> None:
    decision = decide_error(LookupError("pod x"), ErrorKind.NOT_FOUND, 1, DEADLINE, T0)
    assert (decision.verdict, decision.message) == (Verdict.FAILED, "gone: LookupError: pod x")


def test_transient_errors_wait_until_the_cap_or_the_deadline() -> None:
    exc = ConnectionError("throttled")
    assert decide_error(exc, ErrorKind.TRANSIENT, 1, DEADLINE, T0, max_transient=3).verdict is Verdict.WAIT
    capped = decide_error(exc, ErrorKind.TRANSIENT, 3, DEADLINE, T0, max_transient=3)
    assert capped.verdict is Verdict.FAILED
    assert "failed 3 times in a row" in capped.message
    assert "ConnectionError: throttled" in capped.message
    late = decide_error(exc, ErrorKind.TRANSIENT, 1, DEADLINE, DEADLINE, max_transient=3)
    assert late.verdict is Verdict.TIMEOUT
    assert "status check failing: ConnectionError: throttled" in late.message


def test_readiness_wait_counts_errors_in_a_row_and_a_status_resets_them() -> None:
    clock = Clock()
    wait = ReadinessWait(DEADLINE, default_kind, clock=clock, max_transient=3)
    pending = RunnerStatus(RunnerState.PENDING, "starting")
    assert wait.on_error(ConnectionError("reset")).verdict is Verdict.WAIT
    assert wait.on_error(TimeoutError("slow")).verdict is Verdict.WAIT
    assert wait.errors_in_a_row == 2
    assert wait.on_status(pending).verdict is Verdict.WAIT
    assert wait.errors_in_a_row == 0  # an answer resets the count
    assert wait.on_error(ConnectionError("reset")).verdict is Verdict.WAIT
    assert wait.on_error(ConnectionError("reset")).verdict is Verdict.WAIT
    third = wait.on_error(ConnectionError("reset"))
    assert third.verdict is Verdict.FAILED
    assert wait.transient_errors == 5


def test_readiness_wait_reads_only_its_clock() -> None:
    clock = Clock()
    wait = ReadinessWait(DEADLINE, default_kind, clock=clock)
    pending = RunnerStatus(RunnerState.PENDING, "starting")
    assert wait.on_status(pending).verdict is Verdict.WAIT
    assert not wait.timed_out()
    clock.now = DEADLINE
    assert wait.timed_out()
    decision = wait.on_status(pending)
    assert decision.verdict is Verdict.TIMEOUT
    assert decision.message == f"not ready by {DEADLINE.isoformat()} (last: starting)"
    assert wait.last_message == "starting"


def test_readiness_wait_fails_on_the_first_permanent_error() -> None:
    wait = ReadinessWait(DEADLINE, lambda exc: ErrorKind.PERMANENT, clock=Clock())
    decision = wait.on_error(RuntimeError("401 Unauthorized"))
    assert decision.verdict is Verdict.FAILED
    assert "RuntimeError: 401 Unauthorized" in decision.message
    assert wait.transient_errors == 0
