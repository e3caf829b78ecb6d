"""The backend contract kit (airflow_provider_runners.testing) for ``dataproc_dask``, against the
Dataproc fake of tests/fakes/dataproc.py (the fixtures of tests/unit/test_dataproc_backend.py)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from airflow_provider_runners.core.backend import Backend
from airflow_provider_runners.testing.contract import BackendContract
from tests.fakes.dataproc import FakeDataproc
from tests.unit.test_dataproc_backend import SPEC, backend, fake  # noqa: F401 - fake is a fixture


class TestDataprocDaskContract(BackendContract):
    spec: ClassVar[dict[str, Any]] = SPEC
    ready_timeout: ClassVar[float] = 10.0

    @pytest.fixture
    def backend(self, fake: FakeDataproc) -> Backend:  # noqa: F811 - the contract's fixture
        return backend()
