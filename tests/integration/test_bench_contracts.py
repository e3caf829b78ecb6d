"""The backend contract kit (airflow_provider_runners.testing) for the bench backends: ``bench_http``
against its HTTP bench platform server, ``labgrid`` against a real labgrid coordinator (the
fixtures of tests/integration/test_bench_http.py and test_labgrid.py)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from airflow_provider_runners.core.backend import Backend
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.testing.contract import BackendContract
from tests.bench_http_server import BenchHttpServer
from tests.integration.test_bench_http import (
    make_backend as bench_http_backend,
    server,  # noqa: F401 - a fixture
)
from tests.integration.test_labgrid import (  # noqa: F401 - fixtures
    add_places,
    board,
    client,
    coordinator,
    make_backend as labgrid_backend,
)

pytestmark = pytest.mark.integration
BENCH = {"runner_class": "bench", "profile": "any", "tags": {"tenant": "hil"}, "ttl": "10m"}


class TestBenchHttpContract(BackendContract):
    spec: ClassVar[dict[str, Any]] = {**BENCH, "options": {"tags": {"board": "imx8"}}}
    ready_timeout: ClassVar[float] = 20.0

    @pytest.fixture
    def backend(self, server: BenchHttpServer) -> Backend:  # noqa: F811
        return bench_http_backend(server)

    def missing_handle(self, handle: RunnerHandle) -> RunnerHandle:
        # a bench_http runner is its reservation id
        return handle.model_copy(
            update={
                "resource_id": handle.resource_id + "-missing",
                "details": {**handle.details, "reservation": "999999"},
            }
        )


class TestLabgridContract(BackendContract):
    ready_timeout: ClassVar[float] = 30.0

    @pytest.fixture
    def backend(self, coordinator: Any, client: Any, board: str) -> Backend:  # noqa: F811
        add_places(client, board, "one", "two")
        self.spec = {**BENCH, "options": {"tags": {"board": board}}}
        return labgrid_backend(coordinator.address)

    def missing_handle(self, handle: RunnerHandle) -> RunnerHandle:
        # a labgrid runner is its owner (reservations and acquired places are found by it)
        return handle.model_copy(
            update={
                "resource_id": handle.resource_id + "-missing",
                "details": {
                    **handle.details,
                    "owner": str(handle.details["owner"]) + "-missing",
                    "reservation": None,
                },
            }
        )
