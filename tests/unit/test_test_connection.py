"""Airflow's "Test Connection" for runner Connections: each hook's ``test_connection`` runs the
backend's cheap check (``Backend.check_connection``), creates nothing and shows no secret."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from airflow_provider_runners.backends.registry import backend_classes
from airflow_provider_runners.hooks.runner import RunnerHook, hook_class


def _env_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_generated_hook_has_test_connection() -> None:
    for backend in backend_classes().values():
        assert hook_class(backend).test_connection is RunnerHook.test_connection


def test_a_local_backend_is_reachable_and_nothing_is_created(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    _env_conn(
        monkeypatch, "lh_ok", conn_type="runners_local_host", extra=json.dumps({"state_dir": str(state)})
    )
    ok, message = RunnerHook("lh_ok").test_connection()
    assert (ok, message) == (True, "local_host Connection 'lh_ok': reachable; 0 live runner(s)")
    assert not state.exists() or not any(state.iterdir())


def test_an_unreachable_bench_platform_fails_naming_the_connection_not_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = "tok-9f8e7d6c5b4a-secret"
    _env_conn(
        monkeypatch,
        "bench_down",
        conn_type="runners_bench_http",
        host="127.0.0.1",
        port=_closed_port(),
        schema="http",
        password=token,
        extra=json.dumps({"retries": 0, "timeout_s": 2}),
    )
    ok, message = RunnerHook("bench_down").test_connection()
    assert not ok
    assert message.startswith(
        "bench_http Connection 'bench_down': PlatformUnavailable: bench platform http://127.0.0.1:"
    )
    assert token not in message


def test_a_connection_that_configures_no_backend_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    _env_conn(monkeypatch, "not_a_runner", conn_type="runners_nope")
    ok, message = RunnerHook("not_a_runner").test_connection()
    assert not ok
    assert message.startswith("Connection 'not_a_runner': ")
    assert "runners_nope" in message


def test_airflow_connection_test_connection_uses_the_hook(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What the API server's "Test Connection" does: ``Connection.test_connection()``."""
    from airflow.models.connection import Connection

    extra = json.dumps({"state_dir": str(tmp_path)})
    _env_conn(monkeypatch, "lh_api", conn_type="runners_local_host", extra=extra)
    conn = Connection(conn_id="lh_api", conn_type="runners_local_host", extra=extra)
    assert conn.test_connection() == (True, "local_host Connection 'lh_api': reachable; 0 live runner(s)")


def test_ec2_is_one_describe_instances_call_against_moto_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real boto3 through the Amazon provider's AwsBaseHook, moto *server* over HTTP."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            monkeypatch.setenv(key, value)
        aws_extra = {"endpoint_url": f"http://{host}:{port}", "region_name": "eu-west-1"}
        _env_conn(monkeypatch, "aws_probe", conn_type="aws", extra=json.dumps(aws_extra))
        runner_extra = {"region_name": "eu-west-1", "aws_conn_id": "aws_probe"}
        _env_conn(monkeypatch, "ec2_probe", conn_type="runners_ec2", extra=json.dumps(runner_extra))
        ok, message = RunnerHook("ec2_probe").test_connection()
    finally:
        server.stop()
    assert (ok, message) == (
        True,
        (
            "ec2 Connection 'ec2_probe': EC2 API in eu-west-1 reachable with AWS Connection 'aws_probe'; "
            "0 managed instance(s)"
        ),
    )


def test_ec2_without_a_region_fails_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    _env_conn(monkeypatch, "ec2_noregion", conn_type="runners_ec2", extra="{}")
    ok, message = RunnerHook("ec2_noregion").test_connection()
    assert not ok
    assert "Connection 'ec2_noregion' extra region_name: required" in message


def test_bench_http_checks_the_token_against_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench platform of docs/bench_http.openapi.yaml (tests/bench_http_server.py, real HTTP)."""
    from tests.bench_http_server import BenchHttpServer

    token = "bench-tok-1a2b3c4d"
    server = BenchHttpServer({"imx8-a": {"tags": {"board": "imx8"}}}, token=token).start()
    try:
        for conn_id, password in (("bench_ok", token), ("bench_badtoken", "wrong-tok-9z8y")):
            _env_conn(
                monkeypatch,
                conn_id,
                conn_type="runners_bench_http",
                host="127.0.0.1",
                port=server.port,
                schema="http",
                password=password,
                extra=json.dumps({"base_path": "/api/v1", "retries": 0}),
            )
        ok, message = RunnerHook("bench_ok").test_connection()
        assert (ok, message) == (True, "bench_http Connection 'bench_ok': reachable; 0 live runner(s)")
        ok, message = RunnerHook("bench_badtoken").test_connection()
        assert not ok
        assert "refused the token of Connection 'bench_badtoken' (401)" in message
        assert "wrong-tok-9z8y" not in message
    finally:
        server.stop()
