"""Hooks: one thin class per runner Connection type, generated from the backend classes.

A backend class is the single source of its Connection type, hook name and form
(:meth:`~airflow_provider_runners.core.backend.Backend.connection_type_info`); its hook is
``airflow_provider_runners.hooks.runner.<Name>RunnerHook`` (``Ec2Backend`` -> ``Ec2RunnerHook``),
made on first access by :func:`hook_class`. Third-party backends get theirs the same way.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_runners.backends.registry import DEFAULT_CONN_ID, backend_classes, get_backend

if TYPE_CHECKING:
    from airflow_provider_runners.core.backend import Backend


class RunnerHook(BaseHook):
    """Gives the backend configured by a runner Connection (``runners_*`` conn types)."""

    conn_name_attr = "runner_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "runners"
    hook_name = "Runners"
    #: The backend class this hook was generated from (None on the base class).
    backend_class: type[Backend] | None = None

    def __init__(self, runner_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runner_conn_id = runner_conn_id

    def get_conn(self) -> Backend:
        return get_backend(self.runner_conn_id)

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test Connection": the backend's cheap reachability / credentials check
        (:meth:`~airflow_provider_runners.core.backend.Backend.check_connection`); creates nothing.
        A Connection that does not configure a backend is a failure naming the problem."""
        from airflow_provider_runners.core.redact import redact_text

        try:
            backend = self.get_conn()
        except Exception as exc:  # noqa: BLE001 - "Test Connection" shows the message
            return False, redact_text(f"Connection {self.runner_conn_id!r}: {type(exc).__name__}: {exc}")
        return backend.check_connection()


@cache
def hook_class(backend: type[Backend]) -> type[RunnerHook]:
    """The hook of ``backend``'s Connection type (one class per backend, cached)."""
    name = backend.hook_class_name().rpartition(".")[2]
    doc = f"Connection type ``{backend.conn_type}``: {backend.hook_name} ({backend.__module__})."
    return type(
        name,
        (RunnerHook,),
        {
            "__module__": __name__,
            "__doc__": doc,
            "conn_type": backend.conn_type,
            "hook_name": backend.hook_name,
            "backend_class": backend,
        },
    )


def __getattr__(name: str) -> type[RunnerHook]:
    for backend in backend_classes().values():
        if backend.hook_class_name().rpartition(".")[2] == name:
            return hook_class(backend)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
