"""Map an Airflow Connection's ``conn_type`` to a backend class.

Every backend, the built-in ones included, is an entry point of the group
``airflow_provider_runners.backends`` (this distribution's are in its pyproject.toml)::

    [project.entry-points."airflow_provider_runners.backends"]
    my_backend = "my_package.backend:MyBackend"   # class sets conn_type = "runners_my_backend"

Two entry points claiming the same conn_type are an error naming both (no silent shadowing).
A Connection whose id is :data:`DEFAULT_CONN_ID` and that is not defined anywhere selects
the embedded ``local_dask`` backend, and ``runners_local_host`` the ``local_host`` backend
(:data:`EMBEDDED_CONNECTIONS`), so the example DAGs run with no configuration at all.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from airflow_provider_runners.connections import connection_extra, mask_connection_secrets
from airflow_provider_runners.core.backend import Backend, ConnectionConfig
from airflow_provider_runners.exceptions import BackendNotFoundError, RunnerSpecError

if TYPE_CHECKING:
    from airflow_provider_runners.core.catalog import ResolvedSpec

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "airflow_provider_runners.backends"
DEFAULT_CONN_ID = "runners_default"

#: The distribution whose entry points are the built-in backends.
DISTRIBUTION = "airflow-provider-runners"

#: Connection ids that select an embedded local backend when they are not defined anywhere.
EMBEDDED_CONNECTIONS: dict[str, str] = {
    DEFAULT_CONN_ID: "runners_local_dask",
    "runners_local_host": "runners_local_host",
}


@dataclass(frozen=True)
class _Found:
    classes: dict[str, type[Backend]]
    builtin: tuple[str, ...]
    #: conn_type -> the entry points ("name = value") that claim it, when more than one does.
    conflicts: dict[str, list[str]]


@lru_cache(maxsize=1)
def _discover() -> _Found:
    classes: dict[str, type[Backend]] = {}
    origin: dict[str, str] = {}
    builtin: list[str] = []
    conflicts: dict[str, list[str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not disable the others
            log.warning("runner backend entry point %s = %s failed to load: %s", ep.name, ep.value, exc)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            log.warning("runner backend entry point %s = %s is not a Backend subclass", ep.name, ep.value)
            continue
        where = f"{ep.name} = {ep.value}"
        if cls.conn_type in classes and classes[cls.conn_type] is not cls:
            conflicts.setdefault(cls.conn_type, [origin[cls.conn_type]]).append(where)
            log.error("runner backend conn_type %r is claimed by %s", cls.conn_type, conflicts[cls.conn_type])
            continue
        classes[cls.conn_type], origin[cls.conn_type] = cls, where
        if ep.dist is not None and ep.dist.name == DISTRIBUTION and cls.conn_type not in builtin:
            builtin.append(cls.conn_type)
    return _Found(classes, tuple(builtin), conflicts)


def backend_classes() -> dict[str, type[Backend]]:
    """Every installed backend class by conn_type (entry points of :data:`ENTRY_POINT_GROUP`),
    read once per process (:func:`reload_backends` reads them again)."""
    return _discover().classes


def reload_backends() -> None:
    """Forget the entry points read so far (after installing a backend, and in tests)."""
    _discover.cache_clear()


def builtin_backend_classes() -> list[type[Backend]]:
    """The backends this distribution ships (its own entry points), for its provider info."""
    found = _discover()
    return [found.classes[conn_type] for conn_type in found.builtin]


def backend_class(conn_type: str) -> type[Backend]:
    found = _discover()
    if conn_type in found.conflicts:
        raise BackendNotFoundError(
            f"conn_type {conn_type!r} is claimed by several backend entry points: {found.conflicts[conn_type]}; "
            "uninstall one of them"
        )
    classes = found.classes
    try:
        return classes[conn_type]
    except KeyError:
        raise BackendNotFoundError(
            f"no runner backend for conn_type {conn_type!r}; known: {sorted(classes)}"
        ) from None


def check_spec(resolved: ResolvedSpec) -> type[Backend] | None:
    """The parse-time options check (no Connection is read; docs/architecture.md).

    ``spec.backend`` names the backend: its :meth:`~Backend.check_spec` runs (options model and
    deeper checks) and it must serve the runner class. Without it, the spec's options must be
    accepted by at least one installed backend serving the runner class (each one's options
    model), and a ``spec.idle_timeout`` must be enforced by at least one of them
    (:meth:`~Backend.check_idle_timeout`); the Connection picks the backend at run time and checks
    again. Returns the backend class when exactly one can serve the spec.
    """
    spec = resolved.spec
    classes = list(backend_classes().values())
    if spec.backend is not None:
        named = [cls for cls in classes if cls.name == spec.backend]
        if not named:
            raise RunnerSpecError(
                f"spec.backend: {spec.backend!r} is not an installed backend; allowed: {sorted(c.name for c in classes)}"
            )
        cls = named[0]
        if spec.runner_class not in cls.runner_classes:
            raise RunnerSpecError(
                f"spec.runner_class: {spec.runner_class!r} is not served by backend {cls.name!r}; "
                f"it serves: {sorted(cls.runner_classes)}"
            )
        cls.check_spec(resolved)
        return cls
    candidates = sorted((c for c in classes if spec.runner_class in c.runner_classes), key=lambda c: c.name)
    problems: list[str] = []
    for cls in candidates:
        try:
            cls.check_options(resolved)
        except RunnerSpecError as exc:
            problems.append(str(exc))
    if candidates and len(problems) == len(candidates):
        raise RunnerSpecError(
            f"spec.options: no installed backend for runner_class {spec.runner_class!r} accepts them: "
            + "; ".join(problems)
        )
    refusals = [error for cls in candidates if (error := cls.idle_timeout_error(spec)) is not None]
    if candidates and len(refusals) == len(candidates):  # nobody would end it when idle
        raise RunnerSpecError("; ".join(refusals))
    return candidates[0] if len(candidates) == 1 else None


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
    # Not conn.extra_dejson: it logs a malformed extra and returns {} (docs/architecture.md).
    extra = connection_extra(conn_id, getattr(conn, "extra", None))
    return ConnectionConfig(
        conn_id=conn_id,
        conn_type=conn.conn_type or "",
        host=conn.host,
        port=conn.port,
        login=conn.login,
        password=conn.password,
        schema=conn.schema,
        extra=extra,
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
    """Register the Connection's secret values with Airflow's log masker (in this process)."""
    mask_connection_secrets(config.password, config.extra, cls.secret_extra_fields)


def mask_runner_connection(conn_id: str) -> None:
    """Register the secrets of runner Connection ``conn_id`` with the log masker of this process.

    For tasks that use a runner without building its backend (``DaskJobOperator``): on a real
    deployment each task is its own process, and only the process that registered a value masks
    it. An undefined embedded Connection has no secrets; an unknown conn_type masks the password.
    """
    config = connection_config(conn_id)
    cls = backend_classes().get(config.conn_type)
    mask_connection_secrets(config.password, config.extra, cls.secret_extra_fields if cls else ())


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
