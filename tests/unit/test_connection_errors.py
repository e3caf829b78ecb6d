"""One exception for a wrong runner Connection, whichever backend reads it."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_runners.backends.registry import backend_class
from airflow_provider_runners.core.backend import ConnectionConfig
from airflow_provider_runners.exceptions import ConnectionConfigError, ProvisionError, RunnerSpecError


@pytest.mark.parametrize(
    ("conn_type", "fields", "expected"),
    [
        ("runners_ec2", {"extra": {}}, "Connection 'bad' extra region_name: required"),
        (
            "runners_ec2",
            {"extra": {"region_name": "eu-west-1", "pool_return": "hibernate"}},
            "Connection 'bad' extra pool_return: 'hibernate'; allowed: ['running', 'stop']",
        ),
        (
            "runners_dataproc_dask",
            {"extra": {"region": "europe-west1", "zone": "us-east1-b"}},
            "Connection 'bad' extra zone: 'us-east1-b' is not a zone of 'europe-west1'",
        ),
        (
            "runners_labgrid",
            {"host": "127.0.0.1", "port": 20408, "extra": {"owner_host": "a/b"}},
            "Connection 'bad' extra owner_host: 'a/b' must not contain '/'",
        ),
        (
            "runners_bench_http",
            {"host": "benches.example", "schema": "ftp"},
            "Connection 'bad' schema: 'ftp' is not http or https",
        ),
    ],
)
def test_a_wrong_connection_raises_connection_config_error(
    conn_type: str, fields: dict[str, Any], expected: str
) -> None:
    cls = backend_class(conn_type)
    with pytest.raises(ConnectionConfigError) as info:
        cls(ConnectionConfig(conn_id="bad", conn_type=conn_type, **fields))
    assert expected in str(info.value)
    # still what these backends raised before: callers catching either keep working
    assert isinstance(info.value, RunnerSpecError)
    assert isinstance(info.value, ProvisionError)
