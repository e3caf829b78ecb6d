"""What the errors of the ``bench_http`` backend mean (its
:class:`~airflow_provider_runners.core.errors.ErrorMap`).

The backend calls the platform with ``requests`` (urllib3 retries connection errors and 5xx
first) and turns what is left into :class:`PlatformUnavailable` (no answer, 5xx) or a
``ProvisionError`` naming the refusal (401, a reservation refused).
"""

from __future__ import annotations

from airflow_provider_runners.core.errors import ErrorKind, ErrorMap, class_names, http_kind
from airflow_provider_runners.exceptions import ProvisionError


class PlatformUnavailable(ProvisionError):
    """The bench platform did not answer (connection error, timeout, 5xx after retries)."""


#: ``requests`` errors raised before an answer.
TRANSIENT_CLASSES = frozenset(
    {"ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout", "ChunkedEncodingError"}
)


class BenchHttpErrorMap(ErrorMap):
    """:class:`PlatformUnavailable` and connection errors TRANSIENT; an ``HTTPError`` by its
    status (404 NOT_FOUND, 429/5xx TRANSIENT, other 4xx PERMANENT); the backend's refusals
    (``ProvisionError``: a rejected token, a refused reservation) PERMANENT by default."""

    def recognise(self, exc: BaseException) -> ErrorKind | None:
        if isinstance(exc, PlatformUnavailable):
            return ErrorKind.TRANSIENT
        names = class_names(exc)
        if "HTTPError" in names:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            return http_kind(status if isinstance(status, int) else None) or ErrorKind.PERMANENT
        if "RequestException" in names and names & TRANSIENT_CLASSES:
            return ErrorKind.TRANSIENT
        return None


BENCH_HTTP_ERRORS = BenchHttpErrorMap()
