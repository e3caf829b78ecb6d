"""Each backend's error map (backends/*/errors.py), fed the real exception classes of its SDK."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_runners.backends.registry import backend_class
from airflow_provider_runners.core.backend import Backend
from airflow_provider_runners.core.errors import ErrorKind, default_kind
from airflow_provider_runners.exceptions import (
    ConnectionConfigError,
    ConnectionExtraError,
    MissingExtraError,
    ProvisionError,
    RunnerNotFoundError,
)

T, P, N = ErrorKind.TRANSIENT, ErrorKind.PERMANENT, ErrorKind.NOT_FOUND


def classify(conn_type: str, exc: BaseException) -> ErrorKind:
    """Through the class method every caller uses, so the backend's wiring is tested too."""
    cls: type[Backend] = backend_class(conn_type)
    return cls.classify_error(exc)


# -- ec2: botocore ------------------------------------------------------------------------------
def client_error(code: str, status: int = 400, operation: str = "DescribeInstances") -> Exception:
    from botocore.exceptions import ClientError

    response: Any = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("RequestLimitExceeded", 503, T),
        ("Throttling", 400, T),
        ("InternalError", 500, T),
        ("ServiceUnavailable", 503, T),
        ("InsufficientInstanceCapacity", 500, T),
        ("SomethingNew", 502, T),  # unknown code, 5xx: by status
        ("InvalidInstanceID.NotFound", 400, N),
        ("InvalidVolume.NotFound", 400, N),
        ("UnauthorizedOperation", 403, P),
        ("AuthFailure", 401, P),
        ("InvalidParameterValue", 400, P),
        ("OptInRequired", 403, P),
        ("SomethingElse", 404, P),  # a 404 without a *.NotFound code is a wrong request, not a gone runner
    ],
)
def test_ec2_map_classifies_client_errors_by_code_then_status(
    code: str, status: int, kind: ErrorKind
) -> None:
    assert classify("runners_ec2", client_error(code, status)) is kind


def test_ec2_map_classifies_botocore_network_and_credential_errors() -> None:
    from botocore.exceptions import (
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ParamValidationError,
        ReadTimeoutError,
    )

    assert (
        classify("runners_ec2", EndpointConnectionError(endpoint_url="https://ec2.eu-west-1.amazonaws.com"))
        is T
    )
    assert classify("runners_ec2", ConnectTimeoutError(endpoint_url="https://ec2")) is T
    assert classify("runners_ec2", ReadTimeoutError(endpoint_url="https://ec2")) is T
    assert classify("runners_ec2", NoCredentialsError()) is P
    assert classify("runners_ec2", ParamValidationError(report="InstanceIds: wrong type")) is P


# -- kubernetes: ApiException, urllib3 ----------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (404, N),
        (409, T),
        (429, T),
        (500, T),
        (503, T),
        (401, P),
        (403, P),
        (422, P),
        (400, P),
        (0, T),
        (None, T),
    ],
)
def test_kubernetes_map_classifies_api_exceptions_by_status(status: int | None, kind: ErrorKind) -> None:
    from kubernetes.client.rest import ApiException

    assert classify("runners_kubernetes", ApiException(status=status, reason="test")) is kind


def test_kubernetes_map_classifies_urllib3_connection_errors_as_transient() -> None:
    from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

    assert classify("runners_kubernetes", MaxRetryError(None, "https://k8s:6443/api", reason=None)) is T  # type: ignore[arg-type]
    assert classify("runners_kubernetes", NewConnectionError(None, "refused")) is T  # type: ignore[arg-type]
    assert classify("runners_kubernetes", ProtocolError("connection aborted")) is T


# -- dataproc_dask: google.api_core, google.auth ------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("NotFound", N),
        ("TooManyRequests", T),
        ("ResourceExhausted", T),
        ("ServiceUnavailable", T),
        ("InternalServerError", T),
        ("GatewayTimeout", T),
        ("DeadlineExceeded", T),
        ("Aborted", T),
        ("PermissionDenied", P),
        ("Unauthenticated", P),
        ("Forbidden", P),
        ("InvalidArgument", P),
        ("BadRequest", P),
        ("FailedPrecondition", P),
        ("AlreadyExists", P),
    ],
)
def test_dataproc_map_classifies_google_api_errors(name: str, kind: ErrorKind) -> None:
    from google.api_core import exceptions

    assert classify("runners_dataproc_dask", getattr(exceptions, name)("cluster rn-x")) is kind


def test_dataproc_map_classifies_retry_and_auth_errors() -> None:
    from google.api_core.exceptions import RetryError
    from google.auth.exceptions import DefaultCredentialsError, RefreshError, TransportError

    assert classify("runners_dataproc_dask", RetryError("deadline of 600s exceeded", cause=None)) is T
    assert classify("runners_dataproc_dask", TransportError("connection reset")) is T
    assert classify("runners_dataproc_dask", RefreshError("invalid_grant")) is P
    assert classify("runners_dataproc_dask", DefaultCredentialsError("no credentials")) is P


# -- bench_http: requests and the backend's own errors -----------------------------------------
def http_error(status: int) -> Exception:
    import requests

    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status}", response=response)


@pytest.mark.parametrize(
    ("status", "kind"), [(404, N), (429, T), (500, T), (503, T), (401, P), (403, P), (422, P)]
)
def test_bench_http_map_classifies_http_errors_by_status(status: int, kind: ErrorKind) -> None:
    assert classify("runners_bench_http", http_error(status)) is kind


def test_bench_http_map_classifies_unavailable_and_refusals() -> None:
    import requests

    from airflow_provider_runners.backends.bench_http.backend import PlatformUnavailable

    assert classify("runners_bench_http", PlatformUnavailable("bench platform http://b: HTTP 503")) is T
    assert classify("runners_bench_http", requests.ConnectionError("refused")) is T
    assert classify("runners_bench_http", requests.Timeout("read timed out")) is T
    refused = ProvisionError("bench platform http://b refused the token of Connection 'c' (401)")
    assert classify("runners_bench_http", refused) is P


# -- labgrid: the coordinator client's errors ---------------------------------------------------
@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("NOT_FOUND", N),
        ("RESOURCE_EXHAUSTED", T),
        ("ABORTED", T),
        ("PERMISSION_DENIED", P),
        ("INVALID_ARGUMENT", P),
        ("", P),
    ],
)
def test_labgrid_map_classifies_rejections_by_grpc_code(code: str, kind: ErrorKind) -> None:
    from airflow_provider_runners.backends.labgrid.client import CoordinatorRejected

    assert (
        classify(
            "runners_labgrid", CoordinatorRejected("coordinator 127.0.0.1:20408: AcquirePlace: no", code=code)
        )
        is kind
    )


def test_labgrid_map_classifies_an_unavailable_coordinator_and_raw_grpc_errors() -> None:
    import grpc

    from airflow_provider_runners.backends.labgrid.client import CoordinatorUnavailable

    class Rpc(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

    assert classify("runners_labgrid", CoordinatorUnavailable("coordinator x: UNAVAILABLE")) is T
    assert classify("runners_labgrid", Rpc(grpc.StatusCode.UNAVAILABLE)) is T
    assert classify("runners_labgrid", Rpc(grpc.StatusCode.NOT_FOUND)) is N
    assert classify("runners_labgrid", Rpc(grpc.StatusCode.UNAUTHENTICATED)) is P


# -- ssh: the ssh binary's exit status ---------------------------------------------------------
def test_ssh_map_retries_an_unreachable_host_only() -> None:
    from airflow_provider_runners.backends.ssh.errors import SshUnreachable

    assert classify("runners_ssh", SshUnreachable("ssh host h:22: Connection refused")) is T
    assert issubclass(SshUnreachable, ProvisionError)  # what callers caught before
    assert classify("runners_ssh", ProvisionError("teardown of x on ssh host h:22 failed: rm: denied")) is P


# -- the default map (local backends, third-party backends) -------------------------------------
def test_default_map() -> None:
    import httpx

    request = httpx.Request("GET", "https://api.example/runners/1")
    assert default_kind(RunnerNotFoundError("runner x")) is N
    assert default_kind(ConnectionError("reset")) is T
    assert default_kind(TimeoutError()) is T
    assert default_kind(httpx.ConnectError("refused", request=request)) is T
    for status, kind in ((503, T), (429, T), (404, N), (403, P)):
        response = httpx.Response(status, request=request)
        assert default_kind(httpx.HTTPStatusError(str(status), request=request, response=response)) is kind
    assert default_kind(ConnectionConfigError("Connection 'c' extra x: required")) is P
    assert default_kind(ConnectionExtraError("Connection 'c': extra is not valid JSON")) is P
    assert default_kind(MissingExtraError("kubernetes", "kubernetes", "kubernetes")) is P
    assert default_kind(KeyError("InstanceId")) is P  # a programming error: no retry fixes it
    assert default_kind(RuntimeError("some SDK error nobody mapped")) is T  # the deadline still bounds it


@pytest.mark.parametrize(
    "conn_type",
    [
        "runners_ec2",
        "runners_kubernetes",
        "runners_dataproc_dask",
        "runners_bench_http",
        "runners_labgrid",
        "runners_ssh",
    ],
)
def test_every_backend_map_falls_back_to_the_default(conn_type: str) -> None:
    assert classify(conn_type, RunnerNotFoundError("gone")) is N
    assert classify(conn_type, ConnectionConfigError("Connection 'c' extra x: required")) is P
    assert classify(conn_type, ConnectionError("reset")) is T


def test_runner_not_found_is_what_a_command_on_a_gone_runner_raised_before() -> None:
    """Raised by local_host and ssh ``run_command`` on a runner that is gone: still a RuntimeError."""
    assert issubclass(RunnerNotFoundError, RuntimeError)
    assert issubclass(RunnerNotFoundError, LookupError)
