"""Errors raised by airflow-provider-runners.

The hierarchy is shallow on purpose::

    RunnerError(Exception)
    ├── RunnerSpecError(RunnerError, ValueError)   bad input, raised at DAG parse time; nothing created
    │   └── CatalogError                           the catalog file itself is invalid
    ├── BackendNotFoundError(RunnerError, LookupError)  no backend for a Connection's conn_type
    ├── MissingExtraError(RunnerError, ImportError)     an optional SDK is not installed
    ├── ProvisionError(RunnerError, RuntimeError)       the runner could not be made ready
    │   ├── BudgetExceededError                        a $/hour budget has no room: nothing created
    │   ├── RunnerStatusError                          a wait could not read the runner's status
    │   └── ConnectionConfigError(..., RunnerSpecError)  a runner Connection is wrong (any backend)
    │       └── ConnectionExtraError                   ... its extra is not a JSON object
    ├── RunnerNotFoundError(RunnerError, LookupError, RuntimeError)  the runner is gone (a command
    │                                                   on it; error maps: NOT_FOUND, teardown: success)
    ├── RunnerCommandError(RunnerError, RuntimeError)   a command on a runner exited non-zero
    │   └── RunnerCommandTimeout(..., TimeoutError)    ... or did not finish in time (cancelled)
    ├── EvidenceError(RunnerError, RuntimeError)        the ledger could not be written or read
    └── ReaperError(RunnerError, RuntimeError)          a sweep could not list a backend or end a runner

Catch ``RunnerError`` to handle everything this package raises on purpose. Each also
derives from the closest standard exception, so ``except ValueError`` keeps working for
validation errors.
"""

from __future__ import annotations


class RunnerError(Exception):
    """Base class of every error this package raises on purpose."""


class RunnerSpecError(RunnerError, ValueError):
    """A runner spec does not validate or does not resolve against the catalog.

    The message names the field, the value given and what is allowed.
    """


class CatalogError(RunnerSpecError):
    """The catalog YAML is malformed or internally inconsistent."""


class BackendNotFoundError(RunnerError, LookupError):
    """No backend is registered for a Connection's conn_type."""


class MissingExtraError(RunnerError, ImportError):
    """A backend needs an optional dependency that is not installed."""

    def __init__(self, package: str, extra: str, backend: str) -> None:
        super().__init__(
            f"The {backend!r} backend needs {package!r}, which is not installed. "
            f"Install it with: pip install 'airflow-provider-runners[{extra}]'"
        )
        self.package = package
        self.extra = extra


class ProvisionError(RunnerError, RuntimeError):
    """The runner could not be created or did not become ready."""


class RunnerNotFoundError(RunnerError, LookupError, RuntimeError):
    """The runner no longer exists: raised by a call that needs it (``run_command`` on a runner
    that was torn down or expired: local_host, ssh); a backend may raise it from any call on a
    runner that is gone. Every error map classifies it NOT_FOUND (``core/errors.py``), so a wait
    fails ("gone") and a teardown succeeds. Also a RuntimeError, what those calls raised before."""


class ConnectionConfigError(RunnerSpecError, ProvisionError):
    """A runner Connection is wrong (a missing or malformed field or extra): the one exception every
    backend raises for it, naming the Connection, the field, the value and what is allowed.
    It is also a RunnerSpecError and a ProvisionError (and so a ValueError and a RuntimeError),
    the classes backends raised for it before."""


class ConnectionExtraError(ConnectionConfigError):
    """A Connection's extra is malformed JSON or not a JSON object (so also a ConnectionConfigError:
    the one exception for a wrong Connection).

    The message names the Connection and the JSON error (line, column), never the extra's text.
    """


class RunnerStatusError(ProvisionError):
    """A wait for readiness could not read the runner's status: the backend's API refused the call
    (an error its map calls PERMANENT or NOT_FOUND) or failed transiently too many times in a row.
    ``cause`` is the backend's exception, ``kind`` its :class:`~airflow_provider_runners.core.errors.ErrorKind`
    value, ``errors_in_a_row`` how many calls failed in a row."""

    def __init__(self, cause: BaseException, kind: str, errors_in_a_row: int = 1) -> None:
        super().__init__(
            f"status check failed ({kind}, {errors_in_a_row} in a row): {type(cause).__name__}: {cause}"
        )
        self.cause = cause
        self.kind = kind
        self.errors_in_a_row = errors_in_a_row


class EvidenceError(RunnerError, RuntimeError):
    """The evidence ledger could not be written or read."""


class RunnerCommandError(RunnerError, RuntimeError):
    """A command run on a runner exited non-zero or was cancelled."""


class RunnerCommandTimeout(RunnerCommandError, TimeoutError):
    """A command run on a runner did not finish within its timeout and was cancelled."""


class BudgetExceededError(ProvisionError):
    """Creating the runner would take a tenant's or pipeline's $/hour budget over its limit.

    Raised before anything is created; the message names the budget, its limit, the live
    runners it counted and the new runner's rate; ``details`` holds the same as data
    (for the evidence ledger).
    """

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class ReaperError(RunnerError, RuntimeError):
    """A reaper sweep could not list a backend or tear a runner down (the others were swept)."""
