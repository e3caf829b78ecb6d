"""What the AWS errors of the ``ec2`` backend mean (its :class:`~airflow_provider_runners.core.errors.ErrorMap`).

botocore raises ``ClientError`` with an error code for everything the API answered, and its own
classes for what never reached it (no endpoint, a timeout, no credentials). Its *standard* retry
mode has already retried throttling and 5xx a few times when one of these reaches us.
"""

from __future__ import annotations

from airflow_provider_runners.core.errors import ErrorKind, ErrorMap, class_names, http_kind

#: Error codes of a call AWS asks to try again later.
TRANSIENT_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "Unavailable",
        "InternalError",
        "InternalFailure",
        "InsufficientInstanceCapacity",
        "IncorrectInstanceState",  # the instance is between states: asking again succeeds
    }
)
#: Error codes of a resource that does not exist (the runner is gone).
NOT_FOUND_CODES = frozenset(
    {
        "InvalidInstanceID.NotFound",
        "InvalidInstanceID.Malformed",
        "InvalidVolume.NotFound",
        "ResourceNotFoundException",
    }
)
#: botocore errors raised before any answer: the network or the endpoint.
TRANSIENT_CLASSES = frozenset(
    {
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ProxyConnectionError",
        "ConnectionError",
        "HTTPClientError",
    }
)
#: botocore errors no retry fixes: credentials, a malformed request.
PERMANENT_CLASSES = frozenset(
    {
        "NoCredentialsError",
        "PartialCredentialsError",
        "UnknownCredentialError",
        "CredentialRetrievalError",
        "NoRegionError",
        "ParamValidationError",
    }
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError`` (``""`` for anything else)."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


class Ec2ErrorMap(ErrorMap):
    """``ClientError`` by its code (then its HTTP status), botocore's own errors by class."""

    def recognise(self, exc: BaseException) -> ErrorKind | None:
        code = error_code(exc)
        if code:
            if code in NOT_FOUND_CODES or code.endswith(".NotFound"):
                return ErrorKind.NOT_FOUND
            if code in TRANSIENT_CODES:
                return ErrorKind.TRANSIENT
            status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
            kind = http_kind(status if isinstance(status, int) else None)
            # a 404 with a code not known as a missing resource is a wrong request, not a gone runner
            return ErrorKind.PERMANENT if kind in (None, ErrorKind.NOT_FOUND) else kind
        names = class_names(exc)
        if names & PERMANENT_CLASSES:
            return ErrorKind.PERMANENT
        if names & TRANSIENT_CLASSES:
            return ErrorKind.TRANSIENT
        return None


EC2_ERRORS = Ec2ErrorMap()
