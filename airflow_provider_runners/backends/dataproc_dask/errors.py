"""What the Google API errors of the ``dataproc_dask`` backend mean (its
:class:`~airflow_provider_runners.core.errors.ErrorMap`).

``google.api_core.exceptions.GoogleAPICallError`` carries the HTTP status as ``code``
(``NotFound`` 404, ``TooManyRequests``/``ResourceExhausted`` 429, ``ServiceUnavailable`` 503,
``PermissionDenied`` 403, ...); ``RetryError`` is the client's own retries giving up;
``google.auth`` raises ``TransportError`` (network) and ``RefreshError`` /
``DefaultCredentialsError`` (credentials).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_runners.core.errors import ErrorKind, ErrorMap, class_names, http_kind

TRANSIENT_CLASSES = frozenset({"RetryError", "TransportError", "ServerError", "DeadlineExceeded", "Aborted"})
PERMANENT_CLASSES = frozenset(
    {"RefreshError", "DefaultCredentialsError", "Unauthenticated", "PermissionDenied"}
)


class DataprocErrorMap(ErrorMap):
    """Google errors by class first (credentials, transport), then by their HTTP ``code``."""

    def recognise(self, exc: BaseException) -> ErrorKind | None:
        names = class_names(exc)
        if names & PERMANENT_CLASSES:
            return ErrorKind.PERMANENT
        if names & TRANSIENT_CLASSES:
            return ErrorKind.TRANSIENT
        if "GoogleAPICallError" in names:
            code = getattr(exc, "code", None)
            return http_kind(code if isinstance(code, int) else None) or ErrorKind.PERMANENT
        return None


DATAPROC_ERRORS = DataprocErrorMap()


def google_exceptions() -> Any:
    """``google.api_core.exceptions``, imported when first needed (the google extra is optional)."""
    from google.api_core import exceptions

    return exceptions
