"""Reading runner Connections: the extra as a checked JSON object.

Airflow's own ``Connection.extra_dejson`` logs a malformed extra and returns ``{}``, so a typo
in an ``AIRFLOW_CONN_*`` variable or a secrets backend would silently run with defaults.
:func:`connection_extra` raises :class:`~airflow_provider_runners.exceptions.ConnectionExtraError`
instead, naming the Connection and the JSON error (line and column, never the text itself,
which may hold secrets), before anything is created.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
