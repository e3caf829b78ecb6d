"""What the Kubernetes API errors of the ``kubernetes`` backend mean (its
:class:`~airflow_provider_runners.core.errors.ErrorMap`).

The client raises ``ApiException`` with the HTTP status the API server answered (status 0 or
None when there was no answer), and urllib3 errors for connections that failed before one.
"""

from __future__ import annotations

from airflow_provider_runners.core.errors import ErrorKind, ErrorMap, class_names, http_kind

#: urllib3 errors raised before the API server answered.
TRANSIENT_CLASSES = frozenset(
    {
        "MaxRetryError",
        "NewConnectionError",
        "ProtocolError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "TimeoutError",
    }
)


class KubernetesErrorMap(ErrorMap):
    """``ApiException`` by status: 404 NOT_FOUND, 409 (a conflict, e.g. being deleted),
    429 and 5xx TRANSIENT, 401/403/other 4xx PERMANENT; urllib3 connection errors TRANSIENT."""

    def recognise(self, exc: BaseException) -> ErrorKind | None:
        names = class_names(exc)
        if "ApiException" in names or "OpenApiException" in names:
            status = getattr(exc, "status", None)
            if not isinstance(status, int) or status == 0:  # no answer from the API server
                return ErrorKind.TRANSIENT
            if status == 409:
                return ErrorKind.TRANSIENT
            return http_kind(status) or ErrorKind.PERMANENT
        if names & TRANSIENT_CLASSES:
            return ErrorKind.TRANSIENT
        return None


KUBERNETES_ERRORS = KubernetesErrorMap()
