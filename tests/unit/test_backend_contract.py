"""The backend contract kit (airflow_provider_runners.testing) run against backends that need no
cloud: the in-memory one, local_host and local_dask. Cloud backends subclass the same mixin in
their own test modules (kubernetes: tests/unit/test_kubernetes_backend.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from airflow_provider_runners.backends.local_dask.backend import LocalDaskBackend
from airflow_provider_runners.backends.local_host.backend import LocalHostBackend
from airflow_provider_runners.core.backend import Backend, ConnectionConfig, RunnerState
from airflow_provider_runners.testing.contract import BackendContract, use_backend
from airflow_provider_runners.testing.memory import InMemoryBackend, InMemoryCloud
from tests.conftest import local_dask_daemons


class TestInMemoryBackendContract(BackendContract):
    spec: ClassVar[dict[str, Any]] = {
        "runner_class": "dedicated_host",
        "profile": "Large",
        "options": {"ready_after_polls": 2},
    }

    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        cloud = InMemoryCloud()
        yield InMemoryBackend(ConnectionConfig("mem", "runners_memory", extra={"token": "tok-3f9a1c"}), cloud)
        assert cloud.runners == {}  # every contract test cleans up


class TestLocalHostContract(BackendContract):
    spec: ClassVar[dict[str, Any]] = {"runner_class": "dedicated_host", "profile": "Large", "ttl": "10m"}

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        backend = LocalHostBackend(
            ConnectionConfig("host", "runners_local_host", extra={"state_dir": str(tmp_path / "hosts")})
        )
        yield backend
        assert backend.list_managed() == []


class TestLocalDaskContract(BackendContract):
    spec: ClassVar[dict[str, Any]] = {"runner_class": "dask_cluster", "profile": "small", "ttl": "10m"}

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        state = tmp_path / "dask"
        yield LocalDaskBackend(
            ConnectionConfig(
                "dask", "runners_local_dask", extra={"state_dir": str(state), "dashboard": False}
            )
        )
        assert local_dask_daemons(state) == []


def test_use_backend_injects_one_instance_for_one_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_runners.backends import registry
    from airflow_provider_runners.governance import reaper  # holds its own name get_backend
    from airflow_provider_runners.triggers import readiness  # imports get_backend lazily

    cloud = InMemoryCloud()
    mine = use_backend(
        monkeypatch,
        "runners_test_mem",
        InMemoryBackend(ConnectionConfig("runners_test_mem", "runners_memory"), cloud),
    )
    assert registry.get_backend("runners_test_mem") is mine
    assert reaper.get_backend("runners_test_mem") is mine
    assert isinstance(registry.get_backend("runners_local_host"), LocalHostBackend)  # others unchanged
    other = use_backend(monkeypatch, "runners_test_other", InMemoryBackend(cloud=cloud))
    assert reaper.get_backend("runners_test_other") is other  # a second one: both are injected
    assert reaper.get_backend("runners_test_mem") is mine
    assert readiness is not None


def test_in_memory_backend_fails_on_request_and_counts_calls() -> None:
    cloud = InMemoryCloud()
    backend = InMemoryBackend(cloud=cloud)
    contract = TestInMemoryBackendContract()
    contract.spec = {
        "runner_class": "pod",
        "profile": "small",
        "environment": "dev",
        "options": {"fail": True},
    }
    handle = backend.create(contract.request(backend))
    assert backend.status(handle).state is RunnerState.FAILED
    assert backend.teardown(handle).existed is True
    assert cloud.calls == {"create": 1, "status": 1, "teardown": 1}


def test_capabilities_follow_from_what_a_backend_implements() -> None:
    from airflow_provider_runners.backends.registry import backend_classes
    from airflow_provider_runners.core.backend import DetectsStale, runs_commands

    classes = {cls.name: cls for cls in backend_classes().values()}
    commands = {name for name, cls in classes.items() if cls.supports_commands}
    assert {"local_host", "ec2", "kubernetes", "labgrid", "bench_http", "ssh"} <= commands
    assert not commands & {"local_dask", "dataproc_dask"}
    assert all(runs_commands(cls) == cls.supports_commands for cls in classes.values())
    assert InMemoryBackend.supports_commands is False
    assert isinstance(LocalDaskBackend(ConnectionConfig("d", "runners_local_dask")), DetectsStale)
    assert not isinstance(InMemoryBackend(), DetectsStale)
