"""The one readiness decision of a provision wait, shared by the operator's wait in the task and
the deferred :class:`~airflow_provider_runners.triggers.readiness.RunnerReadyTrigger`.

Both loops only fetch a status (or an error) and sleep; what the status *means* — ready, failed
(and why), timed out, keep waiting — is decided here, from the status, the deadline and the
time, with no clock of its own: the caller passes ``now`` (tests pass a fixed one).

:class:`ReadinessWait` adds what a loop needs across polls: errors of the status call, by the
backend's error map (``core/errors.py``) — a permanent one fails the wait with the backend's
message, transient ones keep it waiting until :data:`MAX_TRANSIENT_ERRORS` in a row.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from airflow_provider_runners.core.backend import RunnerState, RunnerStatus
from airflow_provider_runners.core.errors import ErrorKind, describe_error

log = logging.getLogger(__name__)

#: Failed status calls in a row (each classified TRANSIENT) after which a wait gives up.
MAX_TRANSIENT_ERRORS = 20


class Verdict(enum.StrEnum):
    READY = "ready"
    FAILED = "failed"
    TIMEOUT = "timeout"
    WAIT = "wait"


@dataclass(frozen=True)
class Decision:
    """What to do after one poll; ``message`` says why (it ends up in the task's error)."""

    verdict: Verdict
    message: str = ""

    @property
    def final(self) -> bool:
        return self.verdict is not Verdict.WAIT


def decide(status: RunnerStatus, deadline: datetime, now: datetime) -> Decision:
    """The verdict on one status: READY, FAILED (FAILED or GONE), TIMEOUT (still pending at or
    after ``deadline``) or WAIT."""
    if status.state is RunnerState.READY:
        return Decision(Verdict.READY, status.message)
    if status.state in (RunnerState.FAILED, RunnerState.GONE):
        return Decision(Verdict.FAILED, f"{status.state.value}: {status.message}")
    if now >= deadline:
        return Decision(Verdict.TIMEOUT, f"not ready by {deadline.isoformat()} (last: {status.message})")
    return Decision(Verdict.WAIT, status.message)


def decide_error(
    exc: BaseException,
    kind: ErrorKind,
    errors_in_a_row: int,
    deadline: datetime,
    now: datetime,
    max_transient: int = MAX_TRANSIENT_ERRORS,
) -> Decision:
    """The verdict on a failed status call (``errors_in_a_row`` counts this one): FAILED for a
    permanent error, a missing runner or too many transient errors in a row; TIMEOUT past the
    deadline; else WAIT."""
    what = describe_error(exc)
    if kind is ErrorKind.PERMANENT:
        return Decision(Verdict.FAILED, f"status check failed permanently: {what}")
    if kind is ErrorKind.NOT_FOUND:
        return Decision(Verdict.FAILED, f"gone: {what}")
    if errors_in_a_row >= max_transient:
        return Decision(
            Verdict.FAILED,
            f"status check failed {errors_in_a_row} times in a row (transient errors); last: {what}",
        )
    if now >= deadline:
        return Decision(
            Verdict.TIMEOUT, f"not ready by {deadline.isoformat()} (status check failing: {what})"
        )
    return Decision(Verdict.WAIT, f"status check failed ({what}); retrying")


def utc_now() -> datetime:
    return datetime.now(UTC)


class ReadinessWait:
    """The state of one wait across polls: the deadline, the clock and the transient errors in a
    row. Feed it each status (:meth:`on_status`) or each error of the status call
    (:meth:`on_error`); it answers with a :class:`Decision`."""

    def __init__(
        self,
        deadline: datetime,
        classify: Callable[[BaseException], ErrorKind],
        clock: Callable[[], datetime] = utc_now,
        max_transient: int = MAX_TRANSIENT_ERRORS,
    ) -> None:
        self.deadline = deadline
        self.classify = classify
        self.clock = clock
        self.max_transient = max_transient
        self.errors_in_a_row = 0
        self.transient_errors = 0  # over the whole wait (tests read it; nothing records it yet)
        self.last_message = "no status yet"

    def on_status(self, status: RunnerStatus) -> Decision:
        self.errors_in_a_row = 0
        self.last_message = status.message
        return decide(status, self.deadline, self.clock())

    def on_error(self, exc: BaseException) -> Decision:
        kind = self.classify(exc)
        if kind is ErrorKind.TRANSIENT:
            self.errors_in_a_row += 1
            self.transient_errors += 1
            log.warning(
                "status check failed (transient, %d in a row, cap %d): %s",
                self.errors_in_a_row,
                self.max_transient,
                describe_error(exc),
            )
        decision = decide_error(
            exc, kind, self.errors_in_a_row, self.deadline, self.clock(), self.max_transient
        )
        if not decision.final:
            self.last_message = decision.message
        return decision

    def timed_out(self) -> bool:
        return self.clock() >= self.deadline
