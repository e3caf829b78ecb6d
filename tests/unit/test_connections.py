"""Runner Connection extras: malformed JSON is a clear error naming the Connection, never ``{}``."""

from __future__ import annotations

import json

import pytest

from airflow_provider_runners.backends.registry import connection_config, get_backend
from airflow_provider_runners.connections import connection_extra
from airflow_provider_runners.core.secret_refs import parse_secret_env, resolve_on_worker
from airflow_provider_runners.exceptions import ConnectionExtraError


def test_a_json_object_is_read() -> None:
    assert connection_extra("c", '{"state_dir": "/x", "worker_env": {"A": "b"}}') == {
        "state_dir": "/x",
        "worker_env": {"A": "b"},
    }
    assert connection_extra("c", None) == {}
    assert connection_extra("c", "") == {}
    assert connection_extra("c", {"a": 1}) == {"a": 1}


def test_malformed_json_names_the_connection_line_and_column_but_not_the_text() -> None:
    raw = '{\n  "state_dir": "/x",\n  "worker_env": {"TOKEN": "s3cr3t-value" }\n  "idle": 1\n}'
    with pytest.raises(ConnectionExtraError) as err:
        connection_extra("runners_etl", raw)
    message = str(err.value)
    assert message.startswith(
        "Connection 'runners_etl': extra is not valid JSON: Expecting ',' delimiter at line 4 column 3"
    )
    assert "AIRFLOW_CONN_RUNNERS_ETL" in message
    assert "Nothing was created" in message
    assert "s3cr3t-value" not in message
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(("raw", "kind"), [("[1, 2]", "list"), ('"text"', "str"), ("3", "int")])
def test_json_that_is_not_an_object_is_refused(raw: str, kind: str) -> None:
    with pytest.raises(
        ConnectionExtraError, match=f"Connection 'c': extra must be a JSON object, got a JSON {kind}"
    ):
        connection_extra("c", raw)


def test_env_var_connection_with_a_malformed_extra_fails_before_any_backend_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_RUNNERS_TYPO",
        json.dumps({"conn_type": "runners_local_dask", "extra": '{"state_dir": "/tmp/x"'}),
    )
    with pytest.raises(
        ConnectionExtraError, match="Connection 'runners_typo': extra is not valid JSON: Expecting "
    ):
        connection_config("runners_typo")
    with pytest.raises(ConnectionExtraError, match="runners_typo"):
        get_backend("runners_typo")
    # URI form: the extra travels in __extra__
    monkeypatch.setenv(
        "AIRFLOW_CONN_RUNNERS_TYPO_URI", "runners-local-dask://?__extra__=%7B%22state_dir%22%3A"
    )
    with pytest.raises(ConnectionExtraError, match="'runners_typo_uri'.*line 1 column 14"):
        connection_config("runners_typo_uri")


def test_secret_references_to_a_malformed_extra_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ERP_TYPO", json.dumps({"conn_type": "generic", "extra": '{"api_key": }'})
    )
    refs = parse_secret_env({"KEY": "conn:erp_typo#extra.api_key"})
    with pytest.raises(ConnectionExtraError, match="Connection 'erp_typo': extra is not valid JSON"):
        resolve_on_worker(refs)


def test_secret_extra_values_are_masked_whatever_their_key_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow masks a value inside an extra only when its key looks secret (``*_TOKEN``); a
    worker_env value under ``WAREHOUSE_URL`` must be masked too, in every process that reads it."""
    from airflow.sdk._shared.secrets_masker import redact

    from airflow_provider_runners.backends.registry import mask_runner_connection
    from airflow_provider_runners.connections import secret_values

    env = {"WAREHOUSE_URL": "whs-unit-SECRET-1c4d", "ETL_API_TOKEN": "tok-unit-SECRET-88e1", "N": 123456}
    monkeypatch.setenv(
        "AIRFLOW_CONN_RUNNERS_MASK_TEST",
        json.dumps(
            {"conn_type": "runners_local_dask", "extra": {"worker_env": env, "state_dir": "/tmp/sd-x"}}
        ),
    )
    assert sorted(secret_values({"worker_env": env, "state_dir": "/x"}, ["worker_env"])) == sorted(
        ["whs-unit-SECRET-1c4d", "tok-unit-SECRET-88e1", "123456"]
    )
    mask_runner_connection("runners_mask_test")
    line = "url=whs-unit-SECRET-1c4d token=tok-unit-SECRET-88e1 n=123456 dir=/tmp/sd-x"
    assert redact(line) == "url=*** token=*** n=*** dir=/tmp/sd-x"  # state_dir is not a secret


def test_masking_an_undefined_embedded_connection_is_a_no_op() -> None:
    from airflow_provider_runners.backends.registry import mask_runner_connection

    mask_runner_connection("runners_default")  # no Connection defined: no secrets, no error
