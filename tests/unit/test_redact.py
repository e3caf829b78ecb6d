from __future__ import annotations

import copy
import secrets

import pytest

from airflow_provider_runners.core.redact import MASK, redact, redact_text


def _mask_secret(value: str) -> None:
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - older Task SDK layout
        from airflow.sdk._shared.secrets_masker import mask_secret
    mask_secret(value)


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_password",
        "passwd",
        "api_key",
        "api-key",
        "apiKey",
        "token",
        "access_token",
        "secret",
        "client_secret",
        "aws_secret_access_key",
        "private_key",
        "credentials",
        "Authorization",
        "cookie",
        "session_key",
    ],
)
def test_secret_named_keys_are_masked(key: str) -> None:
    assert redact({key: "hunter2-value", "user": "etl"}) == {key: MASK, "user": "etl"}


@pytest.mark.parametrize("value", [12345, 1.5, True, ["a", "b"], {"nested": "x"}])
def test_secret_named_keys_are_masked_whatever_the_value_type(value: object) -> None:
    assert redact({"token": value}) == {"token": MASK}


@pytest.mark.parametrize("value", [None, "", [], {}])
def test_empty_secret_values_stay_empty(value: object) -> None:
    # An empty value leaks nothing, and keeping it shows the field was unset.
    assert redact({"password": value}) == {"password": value}


def test_attempt_token_is_not_masked() -> None:
    token = "rl29f4fd56d59b06d1dc1a224bf5-t3"
    assert redact({"attempt_token": token, "token": token}) == {"attempt_token": token, "token": MASK}


def test_ordinary_keys_and_values_are_kept() -> None:
    facts = {"rows": 4_000_000, "scheduler": "tcp://127.0.0.1:8786", "ok": True, "ratio": 0.5, "none": None}
    assert redact(facts) == facts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        (
            "connect to mysql+pymysql://etl:S3cr3t!@db.internal:3306/x failed",
            "connect to mysql+pymysql://etl:***@db.internal:3306/x failed",
        ),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("a://u:p1@h and b://v:p2@k", "a://u:***@h and b://v:***@k"),
    ],
)
def test_uri_passwords_are_removed_from_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert redact({"message": text}) == {"message": expected}


@pytest.mark.parametrize(
    "text", ["tcp://127.0.0.1:8786", "https://user@example.com/path", "s3://bucket/key:1"]
)
def test_uris_without_a_password_are_kept(text: str) -> None:
    assert redact_text(text) == text


def test_nested_lists_and_dicts_are_redacted() -> None:
    value = {
        "steps": [
            {"name": "extract", "password": "p1", "dsn": "postgresql://u:p2@h/db"},
            ["postgresql://u:p3@h/db", {"api_key": "k"}],
            ("tuple", {"secret": "s"}),
        ],
        "config": {"conn": {"login": "etl", "private_key": "-----BEGIN KEY-----"}},
    }
    original = copy.deepcopy(value)
    assert redact(value) == {
        "steps": [
            {"name": "extract", "password": MASK, "dsn": "postgresql://u:***@h/db"},
            ["postgresql://u:***@h/db", {"api_key": MASK}],
            ["tuple", {"secret": MASK}],
        ],
        "config": {"conn": {"login": "etl", "private_key": MASK}},
    }
    assert value == original  # redact returns a copy


def test_a_secret_dict_is_masked_as_a_whole() -> None:
    assert redact({"credentials": {"user": "u", "key": "k"}}) == {"credentials": MASK}


def test_secret_registered_with_airflow_masker_is_removed_from_free_text() -> None:
    value = "s3cr3t-" + secrets.token_hex(8)
    message = f"vendor API rejected key {value} (HTTP 401)"
    assert redact_text(message) == message  # not yet known to Airflow
    _mask_secret(value)
    redacted = redact({"error": {"message": message, "lines": [message]}})
    assert value not in str(redacted)
    assert redacted["error"]["message"] == "vendor API rejected key *** (HTTP 401)"
    assert redacted["error"]["lines"] == ["vendor API rejected key *** (HTTP 401)"]


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("db_password", True),
        ("ETL_API_TOKEN", True),
        ("apiKey", True),
        ("aws_secret_access_key", True),
        ("Authorization", True),
        ("tests_passed", False),
        ("bypass_cache", False),
        ("attempt_token", False),
        ("tokenizer", False),
        ("rows", False),
    ],
)
def test_secret_keys_are_matched_by_word_not_by_substring(key: str, secret: bool) -> None:
    from airflow_provider_runners.core.redact import is_secret_key

    assert is_secret_key(key) is secret
    assert (redact({key: "value"})[key] == MASK) is secret
