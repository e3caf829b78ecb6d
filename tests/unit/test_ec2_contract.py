"""The backend contract kit (airflow_provider_runners.testing) for ``ec2``, against moto in server
mode with real boto3 (the fixtures of tests/unit/test_ec2_backend.py)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from airflow_provider_runners.core.backend import Backend, ProvisionRequest
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lifecycle import acquire
from airflow_provider_runners.testing.contract import BackendContract
from tests.fakes.ec2_env import Ec2Env
from tests.unit.test_ec2_backend import SPEC, aws, backend, env  # noqa: F401 - aws, env are fixtures


class TestEc2Contract(BackendContract):
    spec: ClassVar[dict[str, Any]] = SPEC
    ready_timeout: ClassVar[float] = 60.0

    @pytest.fixture
    def backend(self, env: Ec2Env) -> Backend:  # noqa: F811 - the contract's fixture
        self.catalog_path = env.catalog_path
        return backend()

    def test_create_twice_with_one_attempt_token_is_one_runner(
        self, backend: Backend, created: tuple[ProvisionRequest, RunnerHandle]
    ) -> None:
        """moto ignores ``ClientToken`` (real EC2 dedups the replay; docs/ec2.md), so a bare second
        ``create`` is a second instance there; a replayed try goes through ``acquire``, which finds
        the runner first — the same promise, one level up."""
        request, handle = created
        again, how = acquire(backend, request)
        assert (again.resource_id, how) == (handle.resource_id, "adopted")
