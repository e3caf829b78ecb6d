"""The backend contract kit (airflow_provider_runners.testing) for the bench backends: ``bench_http``
against its HTTP bench platform server, ``labgrid`` against a real labgrid coordinator (the
fixtures of tests/integration/test_bench_http.py and test_labgrid.py)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from airflow_provider_runners.core.backend import Backend
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

    # Known contract gaps of bench_http (found by this kit; to be fixed in the backend):
    @pytest.mark.xfail(strict=True, reason="a second release reports existed=True")
    def test_teardown_twice_second_is_already_gone(self, backend: Backend) -> None:
        super().test_teardown_twice_second_is_already_gone(backend)

    @pytest.mark.xfail(strict=True, reason="status of an unknown reservation is not GONE")
    def test_status_of_a_missing_runner_is_gone_not_an_error(self, backend: Backend, created: Any) -> None:
        super().test_status_of_a_missing_runner_is_gone_not_an_error(backend, created)


class TestLabgridContract(BackendContract):
    ready_timeout: ClassVar[float] = 30.0

    @pytest.fixture
    def backend(self, coordinator: Any, client: Any, board: str) -> Backend:  # noqa: F811
        add_places(client, board, "one", "two")
        self.spec = {**BENCH, "options": {"tags": {"board": board}}}
        return labgrid_backend(coordinator.address)

    # Known contract gap of labgrid (found by this kit; to be fixed in the backend):
    @pytest.mark.xfail(strict=True, reason="status of an unknown reservation is not GONE")
    def test_status_of_a_missing_runner_is_gone_not_an_error(self, backend: Backend, created: Any) -> None:
        super().test_status_of_a_missing_runner_is_gone_not_an_error(backend, created)
