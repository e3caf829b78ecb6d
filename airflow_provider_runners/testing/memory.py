"""An in-memory backend for tests: runners are entries of an :class:`InMemoryCloud` dict.

It creates nothing outside the process; dropping the cloud object cleans everything up.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, NonNegativeInt

from airflow_provider_runners.core.backend import (
    Backend,
    ConnectionConfig,
    ConnField,
    ProvisionRequest,
    RunnerState,
    RunnerStatus,
    TeardownResult,
)
from airflow_provider_runners.core.handles import RunnerHandle


class InMemoryOptions(BaseModel):
    """``spec.options``: polls before a runner is ready; ``fail`` makes it FAILED instead."""

    model_config = ConfigDict(extra="forbid")
    ready_after_polls: NonNegativeInt = 0
    fail: bool = False


@dataclass
class _Runner:
    handle: RunnerHandle
    polls_left: int
    fail: bool


@dataclass
class InMemoryCloud:
    """The "cloud" of one or more :class:`InMemoryBackend` objects: live runners and API calls."""

    runners: dict[str, _Runner] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class InMemoryBackend(Backend):
    """Runners of every runner class, held in an :class:`InMemoryCloud` (``runners_memory``)."""

    name = "memory"
    conn_type = "runners_memory"
    hook_name = "Runners: in-memory (tests)"
    runner_classes: ClassVar[frozenset[str]] = frozenset({"dask_cluster", "dedicated_host", "pod", "bench"})
    poll_interval: ClassVar[float] = 0.05
    secret_extra_fields: ClassVar[frozenset[str]] = frozenset({"token"})
    conn_fields: ClassVar[Mapping[str, ConnField]] = {"token": ConnField("Token", secret=True)}
    options_model: ClassVar[type[BaseModel] | None] = InMemoryOptions

    def __init__(self, config: ConnectionConfig | None = None, cloud: InMemoryCloud | None = None) -> None:
        super().__init__(config or ConnectionConfig(conn_id="runners_memory", conn_type=self.conn_type))
        self.cloud = cloud if cloud is not None else InMemoryCloud()

    def create(self, request: ProvisionRequest) -> RunnerHandle:
        self.cloud.calls["create"] += 1
        resource_id = f"mem-{request.attempt_token}"
        with self.cloud.lock:
            if resource_id in self.cloud.runners:  # same attempt token: idempotent
                return self.cloud.runners[resource_id].handle
            options = InMemoryOptions.model_validate(dict(request.spec.options))
            handle = RunnerHandle(
                backend=self.name,
                runner_class=request.spec.runner_class,
                resource_id=resource_id,
                conn_id=request.conn_id,
                lineage_key=request.lineage.key,
                attempt_token=request.attempt_token,
                created_at=datetime.now(UTC),
                expires_at=request.expires_at,
                environment=request.resolved.environment,
                profile=request.spec.profile,
                tags=request.resource_labels(),
                pricing=request.pricing(),
            )
            self.cloud.runners[resource_id] = _Runner(handle, options.ready_after_polls, options.fail)
            return handle

    def find(self, lineage_key: str) -> RunnerHandle | None:
        self.cloud.calls["find"] += 1
        with self.cloud.lock:
            found = [r.handle for r in self.cloud.runners.values() if r.handle.lineage_key == lineage_key]
        return max(found, key=lambda h: h.created_at) if found else None

    def status(self, handle: RunnerHandle) -> RunnerStatus:
        self.cloud.calls["status"] += 1
        with self.cloud.lock:
            runner = self.cloud.runners.get(handle.resource_id)
            if runner is None:
                return RunnerStatus(RunnerState.GONE, "not found")
            if runner.fail:
                return RunnerStatus(RunnerState.FAILED, "failed on request (options.fail)")
            if runner.polls_left > 0:
                runner.polls_left -= 1
                return RunnerStatus(RunnerState.PENDING, f"{runner.polls_left + 1} polls to go")
            return RunnerStatus(
                RunnerState.READY, "ready", endpoints={"memory": f"mem://{handle.resource_id}"}
            )

    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        self.cloud.calls["teardown"] += 1
        with self.cloud.lock:
            existed = self.cloud.runners.pop(handle.resource_id, None) is not None
        return TeardownResult(existed=existed, message="deleted" if existed else "already gone")

    def describe(self, handle: RunnerHandle) -> dict[str, Any]:
        return {"backend": self.name, "resource_id": handle.resource_id, "profile": handle.profile}

    def list_managed(self) -> list[RunnerHandle]:
        with self.cloud.lock:
            return [r.handle for r in self.cloud.runners.values()]
