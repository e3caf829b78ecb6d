"""Map an Airflow Connection's ``conn_type`` to a backend class.

Built-in backends are listed below; third parties add theirs with an entry point::

    [project.entry-points."airflow_provider_runners.backends"]
    my_backend = "my_package.backend:MyBackend"   # class sets conn_type = "runners_my_backend"

A Connection whose id is :data:`DEFAULT_CONN_ID` and that is not defined anywhere selects
the embedded ``local_dask`` backend, and ``runners_local_host`` the ``local_host`` backend
(:data:`EMBEDDED_CONNECTIONS`), so the example DAGs run with no configuration at all.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Iterable
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from airflow_provider_runners.core.backend import Backend, ConnectionConfig
from airflow_provider_runners.exceptions import BackendNotFoundError

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "airflow_provider_runners.backends"
DEFAULT_CONN_ID = "runners_default"

#: conn_type -> "module:Class" for the backends shipped in this package.
BUILTIN_BACKENDS: dict[str, str] = {
    "runners_local_dask": "airflow_provider_runners.backends.local_dask.backend:LocalDaskBackend",
    "runners_dataproc_dask": "airflow_provider_runners.backends.dataproc_dask.backend:DataprocDaskBackend",
    "runners_kubernetes": "airflow_provider_runners.backends.kubernetes.backend:KubernetesBackend",
    "runners_ec2": "airflow_provider_runners.backends.ec2.backend:Ec2Backend",
    "runners_local_host": "airflow_provider_runners.backends.local_host.backend:LocalHostBackend",
    "runners_labgrid": "airflow_provider_runners.backends.labgrid.backend:LabgridBackend",
    "runners_bench_http": "airflow_provider_runners.backends.bench_http.backend:BenchHttpBackend",
}

#: Connection ids that select an embedded local backend when they are not defined anywhere.
EMBEDDED_CONNECTIONS: dict[str, str] = {
    DEFAULT_CONN_ID: "runners_local_dask",
    "runners_local_host": "runners_local_host",
}


def _load(path: str) -> type[Backend]:
    module, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{path} is not a subclass of airflow_provider_runners Backend")
    return cls


@lru_cache(maxsize=1)
def backend_classes() -> dict[str, type[Backend]]:
    """Every known backend class by conn_type (built-ins, then entry points)."""
    found = {conn_type: _load(path) for conn_type, path in BUILTIN_BACKENDS.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not disable the others
            log.warning("runner backend entry point %s = %s failed to load: %s", ep.name, ep.value, exc)
            continue
        if isinstance(cls, type) and issubclass(cls, Backend):
            found.setdefault(cls.conn_type, cls)
        else:
            log.warning("runner backend entry point %s = %s is not a Backend subclass", ep.name, ep.value)
    return found


def backend_class(conn_type: str) -> type[Backend]:
    classes = backend_classes()
    try:
        return classes[conn_type]
    except KeyError:
        raise BackendNotFoundError(
            f"no runner backend for conn_type {conn_type!r}; known: {sorted(classes)}"
        ) from None


def connection_config(conn_id: str) -> ConnectionConfig:
    """Read a Connection through Airflow (secrets backends, env vars, metadata DB)."""
    conn = _get_connection(conn_id)
    if conn is None:
        if conn_id in EMBEDDED_CONNECTIONS:
            return ConnectionConfig(conn_id=conn_id, conn_type=EMBEDDED_CONNECTIONS[conn_id])
        raise BackendNotFoundError(
            f"Connection {conn_id!r} is not defined; define it with conn_type one of "
            f"{sorted(backend_classes())}, or use one of the embedded local ones: "
            f"{sorted(EMBEDDED_CONNECTIONS)}"
        )
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    return ConnectionConfig(
        conn_id=conn_id,
        conn_type=conn.conn_type or "",
        host=conn.host,
        port=conn.port,
        login=conn.login,
        password=conn.password,
        schema=conn.schema,
        extra=dict(extra or {}),
    )


def _get_connection(conn_id: str) -> Any:
    """The Connection through Airflow's secrets chain, or None when it is not defined anywhere."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def get_backend(conn_id: str = DEFAULT_CONN_ID) -> Backend:
    """The backend selected by ``conn_id``'s conn_type, configured from that Connection."""
    config = connection_config(conn_id)
    cls = backend_class(config.conn_type)
    _mask_secrets(config, cls)
    return cls(config)


def _mask_secrets(config: ConnectionConfig, cls: type[Backend]) -> None:
    """Register the Connection's secret values with Airflow's log masker."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover
        return
    if config.password:
        mask_secret(config.password)
    for name in cls.secret_extra_fields:
        value = config.extra.get(name)
        if value:
            mask_secret(value)


def configured_conn_ids(extra: Iterable[str] = (), use_db: bool = True) -> tuple[list[str], list[str]]:
    """Every runner Connection id this deployment knows, and the problems met looking for them.

    The embedded ones (:data:`EMBEDDED_CONNECTIONS`, usable without a definition), ``extra``,
    ``AIRFLOW_CONN_*`` environment variables whose conn_type is ``runners_*`` and, with
    ``use_db``, the metadata database's ``runners_*`` Connections. Connections kept only in a
    secrets backend cannot be listed: name them in ``extra`` (the reaper's ``reaper_conn_ids``).
    Used by the reaper, the budget guard's peers and the Runners UI page.
    """
    found = {*EMBEDDED_CONNECTIONS, *extra}
    errors: list[str] = []
    for name, value in os.environ.items():
        if name.startswith("AIRFLOW_CONN_") and conn_type_of(value).startswith("runners_"):
            found.add(name.removeprefix("AIRFLOW_CONN_").lower())
    if use_db:
        try:
            found.update(_db_runner_conn_ids())
        except Exception as exc:  # noqa: BLE001 - no metadata DB here: env and config only
            from airflow_provider_runners.core.redact import redact_text

            errors.append(redact_text(f"listing Connections: {type(exc).__name__}: {exc}"))
    return sorted(found), errors


def _db_runner_conn_ids() -> list[str]:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(Connection.conn_id).where(Connection.conn_type.like("runners\\_%", escape="\\"))
        return list(session.scalars(query))


def conn_type_of(value: str) -> str:
    """The conn_type of an ``AIRFLOW_CONN_*`` value (JSON or URI form); "" when unreadable."""
    value = value.strip()
    if value.startswith("{"):
        try:
            return str(json.loads(value).get("conn_type") or "")
        except ValueError:
            return ""
    return value.partition("://")[0].replace("-", "_")
