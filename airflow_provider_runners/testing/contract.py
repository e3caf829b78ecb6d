"""The backend contract as a test mixin, and ``use_backend`` to inject a backend into a test.

A backend's tests subclass :class:`BackendContract`, set :attr:`~BackendContract.spec` (one that
resolves in the shipped catalog), and provide a ``backend`` fixture that yields a configured
backend and cleans up after it::

    class TestMyBackendContract(BackendContract):
        spec = {"runner_class": "dedicated_host", "profile": "Large"}

        @pytest.fixture
        def backend(self, tmp_path):
            yield MyBackend(ConnectionConfig(conn_id="c", conn_type="runners_my", extra={...}))

Every test tears down what it creates, also when it fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from airflow_provider_runners.core.backend import Backend, ProvisionRequest, RunnerState, RunnerStatus
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY, Lineage
from airflow_provider_runners.core.redact import is_secret_key
from airflow_provider_runners.core.specs import RunnerSpec


def use_backend(monkeypatch: pytest.MonkeyPatch, conn_id: str, backend: Backend) -> Backend:
    """Make ``get_backend(conn_id)`` return ``backend`` (operators, triggers, reaper) for one test;
    other Connection ids resolve as usual. Returns ``backend``."""
    from airflow_provider_runners.backends import registry
    from airflow_provider_runners.triggers import shared_backend

    real = registry.get_backend
    importers = _importers_of_get_backend()  # before patching: they hold the current function

    def get_backend(wanted: str = registry.DEFAULT_CONN_ID) -> Backend:
        return backend if wanted == conn_id else real(wanted)

    monkeypatch.setattr(registry, "get_backend", get_backend)
    monkeypatch.setattr(shared_backend, "_built", {})  # no trigger reuses a backend built before
    for module in importers:
        monkeypatch.setattr(module, "get_backend", get_backend, raising=False)
    return backend


def _importers_of_get_backend() -> list[Any]:
    """Loaded modules that did ``from ...registry import get_backend`` (they hold their own name)."""
    import sys

    from airflow_provider_runners.backends import registry

    return [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("airflow_provider_runners.")
        and module is not None
        and getattr(module, "get_backend", None) is registry.get_backend
    ]


class BackendContract:
    """What every backend promises (docs/architecture.md, "Adding a backend"), as tests."""

    #: A spec that resolves in the shipped catalog for this backend (tags are added).
    spec: ClassVar[dict[str, Any]] = {}
    #: Seconds to wait for READY.
    ready_timeout: ClassVar[float] = 120.0
    #: The catalog the spec resolves in (None: the configured one); a ``backend`` fixture may set
    #: it on the test instance (``self.catalog_path = ...``) when its catalog is made per test.
    catalog_path: str | None = None

    @pytest.fixture
    def backend(self) -> Iterator[Backend]:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError("a BackendContract subclass provides a `backend` fixture")

    # -- helpers ---------------------------------------------------------------------------------
    def request(self, backend: Backend, task_id: str = "provision", try_number: int = 1) -> ProvisionRequest:
        spec = RunnerSpec.parse({"tags": {"tenant": "contract", "pipeline": "kit"}, **self.spec})
        lineage = Lineage("contract_dag", f"run-{type(self).__name__.lower()}", task_id)
        labels = {
            **lineage.labels(),
            "tenant": "contract",
            "pipeline": "kit",
            "profile": spec.profile.lower(),
        }
        resolved = resolve_spec(spec, backend=backend.name, catalog_path=self.catalog_path)
        return ProvisionRequest.build(
            resolved, lineage, lineage.attempt_token(try_number), backend.conn_id, labels
        )

    def wait(self, backend: Backend, handle: RunnerHandle) -> RunnerStatus:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            status = backend.status(handle)
            if status.state is not RunnerState.PENDING or time.monotonic() > deadline:
                return status
            time.sleep(min(backend.poll_interval, 1.0))

    @pytest.fixture
    def created(self, backend: Backend) -> Iterator[tuple[ProvisionRequest, RunnerHandle]]:
        request = self.request(backend)
        handle = backend.create(request)
        try:
            yield request, handle
        finally:
            backend.teardown(handle)

    # -- the contract ----------------------------------------------------------------------------
    def test_create_returns_a_handle_of_this_backend_and_request(
        self, backend: Backend, created: tuple[ProvisionRequest, RunnerHandle]
    ) -> None:
        request, handle = created
        assert handle.backend == backend.name
        assert handle.conn_id == backend.conn_id
        assert handle.runner_class == request.spec.runner_class
        assert handle.lineage_key == request.lineage.key
        assert handle.attempt_token == request.attempt_token
        assert handle.runner_class in backend.runner_classes

    def test_runner_becomes_ready(
        self, backend: Backend, created: tuple[ProvisionRequest, RunnerHandle]
    ) -> None:
        status = self.wait(backend, created[1])
        assert status.state is RunnerState.READY, status.message

    def test_create_twice_with_one_attempt_token_is_one_runner(
        self, backend: Backend, created: tuple[ProvisionRequest, RunnerHandle]
    ) -> None:
        request, handle = created
        again = backend.create(request)
        assert again.resource_id == handle.resource_id

    def test_find_by_lineage_adopts_the_runner_a_retry_left(
        self, backend: Backend, created: tuple[ProvisionRequest, RunnerHandle]
    ) -> None:
        request, handle = created
        self.wait(backend, handle)
        found = backend.find(request.lineage.key)
        assert found is not None
        assert found.resource_id == handle.resource_id
        assert backend.status(found).is_healthy

    def test_find_of_an_unknown_lineage_is_none(self, backend: Backend) -> None:
        assert backend.find("rl0000000000000000000000000000") is None

    def test_teardown_twice_second_is_already_gone(self, backend: Backend) -> None:
        request = self.request(backend, task_id="teardown_twice")
        handle = backend.create(request)
        try:
            self.wait(backend, handle)
        finally:
            first = backend.teardown(handle)
        second = backend.teardown(handle)
        assert first.existed is True
        assert second.existed is False
        assert backend.status(handle).state is RunnerState.GONE
        assert backend.find(request.lineage.key) is None

    def missing_handle(self, handle: RunnerHandle) -> RunnerHandle:
        """A handle of this backend naming a runner that does not exist. Override it when the
        backend finds its runner by a detail (a reservation id, an owner) and not the resource id."""
        return handle.model_copy(update={"resource_id": handle.resource_id + "-missing"})

    def test_status_of_a_missing_runner_is_gone_not_an_error(
        self, backend: Backend, created: tuple[ProvisionRequest, RunnerHandle]
    ) -> None:
        missing = self.missing_handle(created[1])
        assert backend.status(missing).state is RunnerState.GONE
        statuses = backend.status_many([missing])
        assert statuses[missing.resource_id].state is RunnerState.GONE

    def test_labels_and_expiry(
        self, backend: Backend, created: tuple[ProvisionRequest, RunnerHandle]
    ) -> None:
        request, handle = created
        # the request's expires_at, as it is (or as whole seconds, when read back from a tag)
        assert abs((handle.expires_at - request.expires_at).total_seconds()) < 1
        assert handle.tags.get("expires-at", request.resource_labels()["expires-at"]) == str(
            int(request.expires_at.timestamp())
        )
        assert handle.tags.get("runner-lineage", request.lineage.key) == request.lineage.key
        assert handle.tags.get("managed-by", MANAGED_BY) == MANAGED_BY
        managed = {h.resource_id for h in backend.list_managed()}
        assert handle.resource_id in managed

    def test_describe_gives_evidence_facts_without_secrets(
        self, backend: Backend, created: tuple[ProvisionRequest, RunnerHandle]
    ) -> None:
        handle = created[1]
        self.wait(backend, handle)
        facts = backend.describe(handle)
        assert facts
        secrets = [
            backend.config.password,
            *(backend.config.extra.get(k) for k in backend.secret_extra_fields),
        ]
        flat = repr(facts)
        for secret in filter(None, secrets):
            assert str(secret) not in flat
        assert not [key for key in facts if is_secret_key(str(key)) and facts[key]]

    def test_error_map_knows_a_gone_runner_and_a_wrong_connection(self, backend: Backend) -> None:
        """The backend's error map (``core/errors.py``) keeps the default's answers it does not override."""
        from airflow_provider_runners.core.errors import ErrorKind
        from airflow_provider_runners.exceptions import ConnectionConfigError, RunnerNotFoundError

        assert backend.classify_error(RunnerNotFoundError("gone")) is ErrorKind.NOT_FOUND
        assert (
            backend.classify_error(ConnectionConfigError("Connection 'c' extra x: required"))
            is ErrorKind.PERMANENT
        )
        assert backend.classify_error(ConnectionError("reset")) is ErrorKind.TRANSIENT
