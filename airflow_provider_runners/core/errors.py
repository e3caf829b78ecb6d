"""What an error from a backend's API means for whoever called it: one map per backend.

Every caller of a backend — the shared status poller of the triggers, the provision
operator's wait in the task, :func:`~airflow_provider_runners.governance.ending.end_runners`
(teardown) — asks :meth:`Backend.classify_error(exc) <airflow_provider_runners.core.backend.Backend.classify_error>`
and acts on the answer, instead of each guessing from the exception:

=============  ==============================================  =================================
kind           examples                                        what the caller does
=============  ==============================================  =================================
TRANSIENT      throttling, 5xx, connection refused/reset,     keep waiting (counted, capped,
               timeouts, a coordinator restarting              logged); teardown retries
PERMANENT      bad credentials, no permission, a request       fail the wait at once with the
               the API refuses (4xx), a wrong Connection       backend's message
NOT_FOUND      404, ``InvalidInstanceID.NotFound``             the runner is gone: a wait fails,
                                                               a teardown succeeds
=============  ==============================================  =================================

A backend sets ``error_map`` to an :class:`ErrorMap` defined in its own package (e.g.
``backends/ec2/errors.py``); its ``classify`` recognises the SDK's errors and defers to
:func:`default_kind` for everything else.
"""

from __future__ import annotations

import enum
import socket
import subprocess

from airflow_provider_runners.exceptions import RunnerError, RunnerNotFoundError


class ErrorKind(enum.StrEnum):
    TRANSIENT = "transient"  # try again later: throttling, 5xx, network
    PERMANENT = "permanent"  # trying again gives the same answer: auth, validation, 4xx
    NOT_FOUND = "not_found"  # the runner (or what was asked for) does not exist


#: HTTP statuses worth retrying (throttling, timeouts, server errors).
TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


def http_kind(status: int | None) -> ErrorKind | None:
    """The kind of an HTTP status: 404 NOT_FOUND, :data:`TRANSIENT_HTTP` and other 5xx
    TRANSIENT, other 4xx PERMANENT; None when there is no status to go by."""
    if status is None or status < 400:
        return None
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status in TRANSIENT_HTTP or status >= 500:
        return ErrorKind.TRANSIENT
    return ErrorKind.PERMANENT


def class_names(exc: BaseException) -> frozenset[str]:
    """The names of ``exc``'s class and its bases: maps match SDK exceptions by name, so a map
    never imports an optional SDK (the extra may not be installed)."""
    return frozenset(cls.__name__ for cls in type(exc).__mro__)


def default_kind(exc: BaseException) -> ErrorKind:
    """The map every backend falls back to (and third-party backends get by default).

    ``RunnerNotFoundError`` is NOT_FOUND; an HTTP error with a ``response.status_code``
    (``requests``, ``httpx``) goes by :func:`http_kind`; network errors (``ConnectionError``,
    ``TimeoutError``, DNS failures, a timed-out subprocess) are TRANSIENT; this package's own
    errors (a wrong Connection, a bad spec, a missing extra) and programming errors are
    PERMANENT. Anything else — an SDK error no map recognises — is TRANSIENT: waits keep
    their deadline and the cap on errors in a row, so guessing "try again" never waits forever.
    """
    if isinstance(exc, RunnerNotFoundError):
        return ErrorKind.NOT_FOUND
    status = getattr(getattr(exc, "response", None), "status_code", None)  # requests / httpx HTTP errors
    if isinstance(status, int) and (kind := http_kind(status)) is not None:
        return kind
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror, subprocess.TimeoutExpired)):
        return ErrorKind.TRANSIENT
    if isinstance(exc, (RunnerError, ImportError, TypeError, AttributeError, KeyError, ValueError)):
        return ErrorKind.PERMANENT
    return ErrorKind.TRANSIENT


class ErrorMap:
    """One backend's map from its SDK's exceptions to an :class:`ErrorKind`. Subclasses
    override :meth:`recognise`; :meth:`classify` falls back to :func:`default_kind`."""

    def recognise(self, exc: BaseException) -> ErrorKind | None:
        """The kind of ``exc`` when this map knows its class, else None."""
        return None

    def classify(self, exc: BaseException) -> ErrorKind:
        try:
            kind = self.recognise(exc)
        except Exception:  # noqa: BLE001 - a map must never turn one error into another
            kind = None
        return kind if kind is not None else default_kind(exc)


#: The map of a backend that does not set its own.
DEFAULT_ERROR_MAP = ErrorMap()


def describe_error(exc: BaseException) -> str:
    """``Type: message`` on one line, for wait and teardown messages."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
