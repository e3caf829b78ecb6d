"""Reading runner Connections: the extra as a checked JSON object, and its secrets masked.

Airflow's own ``Connection.extra_dejson`` logs a malformed extra and returns ``{}``, so a typo
in an ``AIRFLOW_CONN_*`` variable or a secrets backend would silently run with defaults.
:func:`connection_extra` raises :class:`~airflow_provider_runners.exceptions.ConnectionExtraError`
instead, naming the Connection and the JSON error (line and column, never the text itself,
which may hold secrets), before anything is created.

:func:`mask_connection_secrets` registers a Connection's secret values with Airflow's log
masker *in the calling process* (and, inside a task, in its supervisor, which writes the task
log). Airflow masks the password and the extra's raw text when a task reads a Connection, but
a value inside the extra only when its *key* looks secret (``*_token``, ``password``, ...);
``worker_env={"WAREHOUSE_URL": "..."}`` would not be. Every path that reads a runner
Connection calls it — building a backend (``registry.get_backend``) and every task that uses
a handle (``DaskJobOperator``), because on a real deployment each task runs in its own process
and a mask registered by the provision task's process does not reach the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_runners.exceptions import ConnectionExtraError


def connection_extra(conn_id: str, raw: Any) -> dict[str, Any]:
    """The Connection's extra as a dict; a clear error when it is not a JSON object."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as exc:
        where = (
            f"{exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})"
            if isinstance(exc, json.JSONDecodeError)
            else str(exc)
        )
        raise ConnectionExtraError(
            f"Connection {conn_id!r}: extra is not valid JSON: {where}. The extra must be a JSON "
            f'object, e.g. {{"state_dir": "/var/lib/runners"}}; fix it in the Connection (environment '
            f"variable AIRFLOW_CONN_{conn_id.upper()}, secrets backend or metadata database). "
            "Nothing was created."
        ) from None
    if not isinstance(value, dict):
        raise ConnectionExtraError(
            f"Connection {conn_id!r}: extra must be a JSON object, got a JSON {type(value).__name__}. "
            "Nothing was created."
        )
    return value


def secret_values(extra: Mapping[str, Any], fields: Iterable[str]) -> list[str]:
    """Every string (and number) inside the ``fields`` of ``extra``, however deeply nested."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple, set)):
            for item in value:
                walk(item)
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            text = str(value)
            if text:
                found.append(text)

    for name in fields:
        walk(extra.get(name))
    return found


def mask_connection_secrets(password: str | None, extra: Mapping[str, Any], fields: Iterable[str]) -> None:
    """Register ``password`` and every value under the secret extra ``fields`` with Airflow's
    log masker, in this process and (inside a task) its supervisor. Values are registered
    without their key, so the key's name does not decide whether they are masked."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - Airflow without the Task SDK log module
        return
    if password:
        mask_secret(password)
    for value in secret_values(extra, fields):
        mask_secret(value)
