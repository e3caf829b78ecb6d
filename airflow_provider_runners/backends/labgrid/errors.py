"""What the coordinator errors of the ``labgrid`` backend mean (its
:class:`~airflow_provider_runners.core.errors.ErrorMap`).

The client (``client.py``) turns gRPC errors into :class:`CoordinatorUnavailable` (UNAVAILABLE,
DEADLINE_EXCEEDED: down, restarting, unreachable) and :class:`CoordinatorRejected` (any other
status code, kept in ``code``).
"""

from __future__ import annotations

from airflow_provider_runners.backends.labgrid.client import CoordinatorRejected, CoordinatorUnavailable
from airflow_provider_runners.core.errors import ErrorKind, ErrorMap

#: gRPC status codes worth retrying.
TRANSIENT_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})


def _code_name(exc: BaseException) -> str:
    if isinstance(exc, CoordinatorRejected):
        return exc.code
    code = getattr(exc, "code", None)  # a raw grpc.RpcError
    try:
        value = code() if callable(code) else code
    except Exception:  # noqa: BLE001 - not a gRPC error after all
        return ""
    return str(getattr(value, "name", "") or "")


class LabgridErrorMap(ErrorMap):
    """Unavailable TRANSIENT; rejected by gRPC code: NOT_FOUND NOT_FOUND, throttling TRANSIENT,
    the rest (an unknown place, not the owner, a bad filter) PERMANENT."""

    def recognise(self, exc: BaseException) -> ErrorKind | None:
        if isinstance(exc, CoordinatorUnavailable):
            return ErrorKind.TRANSIENT
        code = _code_name(exc)
        if not code and not isinstance(exc, CoordinatorRejected):
            return None
        if code == "NOT_FOUND":
            return ErrorKind.NOT_FOUND
        if code in TRANSIENT_CODES:
            return ErrorKind.TRANSIENT
        return ErrorKind.PERMANENT


LABGRID_ERRORS = LabgridErrorMap()
