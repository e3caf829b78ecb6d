"""A real Airflow 3 deployment for end-to-end tests: scheduler, dag-processor, triggerer,
api-server and a Celery worker as separate processes (CeleryExecutor on Redis, metadata on
PostgreSQL), started here and stopped after (tests/support/deployment.py).

PostgreSQL must listen on 127.0.0.1:5432 with trust auth for user ``postgres`` and Redis on
127.0.0.1:6379 (as on the CI machine; ``scripts/ensure-services.sh`` sets both up). Each
deployment gets a database and a Celery queue of its own; the database is dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.deployment import (  # noqa: F401 - re-exported for the e2e tests
    DASK_ENV_SECRETS,
    ERP_SECRET,
    HIL_PLACES,
    HOST_SECRET,
    SERVICES,
    Stack,
    _free_port,
    _start,
    _stop,
    deployment,
)


@pytest.fixture(scope="package")
def airflow_stack() -> Iterator[Stack]:
    """One deployment for the e2e package (stopped before another package starts its own)."""
    with deployment(executor="CeleryExecutor", parallelism=4) as stack:
        yield stack
