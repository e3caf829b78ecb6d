"""Index of live runners: who holds what, at what rate, until when (docs/cost.md).

Backends are the truth about what exists; the registry is a fast, cross-backend *index* of it
that the budget guard, the burst planner, the warm pool and the reaper read without calling
every cloud API. Each record is one runner lineage (one provisioning task instance)::

    key            lineage key (runner-lineage tag)   status  pending -> running -> draining -> ended
    backend, conn_id, resource_id                     holder  attempt token of the try that owns it
    dag_id, run_id, task_id, map_index (exact)        tenant, pipeline, pool, usd_per_hour
    registered_at, last_heartbeat, expires_at (unix seconds; expires_at = the runner's backstop)

A record is *live* while its status is not ``ended`` and ``expires_at`` has not passed. Writes
that change ownership or status are conditional (``transition``/``heartbeat`` name the status
or holder they expect), so two writers never both win: a warm-pool claim, a drain mark or a
heartbeat of an ended runner fails instead of overwriting.

Two implementations: :class:`~airflow_provider_runners.governance.runner_index.sqlite.SqliteRegistry`
(one file, the default, for a single host and dev) and
:class:`~airflow_provider_runners.governance.runner_index.dynamodb.DynamoDBRegistry` (a table shared by
every worker, with DynamoDB TTL as the cleanup; docs/cost.md).

Configuration (``[runners]`` section / ``AIRFLOW__RUNNERS__*``):

=====================  ==========================================================================
``registry``           empty: ``sqlite:///$AIRFLOW_HOME/runners/registry.sqlite``;
                       ``sqlite:///PATH``; ``dynamodb://TABLE``; ``none`` (record nothing)
``registry_conn_id``   AWS Connection for ``dynamodb://`` (default ``aws_default``)
``registry_namespace`` partition of the registry this deployment uses (default ``default``)
=====================  ==========================================================================
"""

from __future__ import annotations

import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from airflow_provider_runners.core.settings import setting

#: Every status but ``ended``: the records a heartbeat refreshes and an end closes.
NOT_ENDED = ("pending", "running", "draining", "idle")

log = logging.getLogger(__name__)

STATUSES = ("pending", "running", "draining", "idle", "ended")
#: How long a reservation (a record written before the create call) counts before it is confirmed.
PENDING_GRACE_S = 600.0


@dataclass(frozen=True)
class RunnerRecord:
    """One runner lineage in the registry. Never a secret: ids, tags, rates and times only."""

    key: str
    backend: str
    conn_id: str
    status: str = "pending"
    resource_id: str = ""
    holder: str = ""
    dag_id: str = ""
    run_id: str = ""
    task_id: str = ""
    map_index: int = -1
    tenant: str = ""
    pipeline: str = ""
    pool: str = ""
    usd_per_hour: float = 0.0
    registered_at: float = field(default_factory=time.time)
    last_heartbeat: float = field(default_factory=time.time)
    expires_at: float = 0.0
    ended_reason: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")

    def live(self, now: float | None = None) -> bool:
        """Not ended and not past its expiry (the runner's backstop ends it then anyway)."""
        now = time.time() if now is None else now
        return self.status != "ended" and self.expires_at > now

    def to_item(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> RunnerRecord:
        names = {f.name for f in fields(cls)}
        data = {k: v for k, v in item.items() if k in names}
        for name in ("map_index",):
            if name in data:
                data[name] = int(data[name])
        for name in ("usd_per_hour", "registered_at", "last_heartbeat", "expires_at"):
            if name in data:
                data[name] = float(data[name])
        return cls(**data)

    def evolve(self, **changes: Any) -> RunnerRecord:
        return replace(self, **changes)


class RunnerRegistry(ABC):
    """Storage for :class:`RunnerRecord`, partitioned by ``namespace``."""

    def __init__(self, namespace: str = "default") -> None:
        self.namespace = namespace

    @abstractmethod
    def put(self, record: RunnerRecord) -> None:
        """Insert or replace the record of ``record.key`` (registration; one try owns a lineage)."""

    @abstractmethod
    def get(self, key: str) -> RunnerRecord | None:
        """The record of ``key``, ended ones included."""

    @abstractmethod
    def records(self) -> list[RunnerRecord]:
        """Every record of this namespace, ended ones included."""

    @abstractmethod
    def transition(
        self,
        key: str,
        status: str | None = None,
        *,
        expect_status: Iterable[str] | None = None,
        expect_holder: str | None = None,
        **changes: Any,
    ) -> bool:
        """Conditionally update a record: only if it exists, its status is one of
        ``expect_status`` and its holder is ``expect_holder`` (each when given). Returns whether
        the write happened — False means another writer got there first, or it is gone."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a record (garbage collection of ended ones)."""

    # -- built on the primitives ---------------------------------------------------------------
    def live(self, now: float | None = None) -> list[RunnerRecord]:
        now = time.time() if now is None else now
        return [r for r in self.records() if r.live(now)]

    def heartbeat(self, key: str, holder: str | None = None, now: float | None = None) -> bool:
        """Refresh ``last_heartbeat`` of a record that is not ended (False if ended or gone)."""
        return self.transition(
            key,
            expect_status=NOT_ENDED,
            expect_holder=holder,
            last_heartbeat=time.time() if now is None else now,
        )

    def heartbeat_many(self, keys: Iterable[str], now: float | None = None) -> int:
        """:meth:`heartbeat` for many records at once (a triggerer's waiting provisions,
        governance/heartbeat.py ``SharedHeartbeats``); returns how many were refreshed. This
        default writes one record at a time; a store that can refresh many in one write does."""
        now = time.time() if now is None else now
        return sum(1 for key in keys if self.heartbeat(key, None, now))

    def end(self, key: str, reason: str, holder: str | None = None) -> bool:
        """Mark a runner ended (it was torn down, reaped, or found gone)."""
        return self.transition(
            key,
            "ended",
            expect_status=NOT_ENDED,
            expect_holder=holder,
            ended_reason=reason,
            last_heartbeat=time.time(),
        )

    def claim(self, key: str, holder: str, from_status: str = "idle", to_status: str = "running") -> bool:
        """Take a runner in ``from_status`` for ``holder`` (a warm-pool claim): at most one wins."""
        return self.transition(key, to_status, expect_status=(from_status,), holder=holder)

    def purge(self, older_than_s: float = 86400.0, now: float | None = None) -> int:
        """Delete records ended (or expired) more than ``older_than_s`` ago; return how many."""
        now = time.time() if now is None else now
        gone = [
            r
            for r in self.records()
            if (r.status == "ended" and r.last_heartbeat < now - older_than_s)
            or r.expires_at < now - older_than_s
        ]
        for record in gone:
            self.delete(record.key)
        return len(gone)


class NullRegistry(RunnerRegistry):
    """``registry = none``: records nothing (budgets then count only what backends list)."""

    def put(self, record: RunnerRecord) -> None:
        return None

    def get(self, key: str) -> RunnerRecord | None:
        return None

    def records(self) -> list[RunnerRecord]:
        return []

    def transition(
        self,
        key: str,
        status: str | None = None,
        *,
        expect_status: Iterable[str] | None = None,
        expect_holder: str | None = None,
        **changes: Any,
    ) -> bool:
        return False

    def delete(self, key: str) -> None:
        return None


def quietly(func: Any, *args: Any) -> Any:
    """Call a registry method; a failure is logged and gives None. The registry is an index:
    writing to it never fails a task, a sweep or a budget check."""
    try:
        return func(*args)
    except Exception as exc:  # noqa: BLE001
        log.warning("runner registry: %s failed: %s", getattr(func, "__name__", func), exc)
        return None


def _conf(key: str) -> str | None:
    return setting(key)


def default_registry_url() -> str:
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return "sqlite:///" + os.path.join(os.path.abspath(home), "runners", "registry.sqlite")


def open_registry(url: str | None = None, namespace: str | None = None) -> RunnerRegistry:
    """The registry at ``url`` (default: the configured one; see the module docstring)."""
    url = url if url is not None else (_conf("registry") or "")
    namespace = namespace or _conf("registry_namespace") or "default"
    if url.strip().lower() in ("none", "off", "false", "disabled"):
        return NullRegistry(namespace)
    url = url or default_registry_url()
    if url.startswith("sqlite:///"):
        from airflow_provider_runners.governance.runner_index.sqlite import SqliteRegistry

        return SqliteRegistry(url.removeprefix("sqlite:///"), namespace)  # sqlite:////abs, sqlite:///rel
    if url.startswith("dynamodb://"):
        from airflow_provider_runners.governance.runner_index.dynamodb import DynamoDBRegistry

        return DynamoDBRegistry(
            url.removeprefix("dynamodb://"), namespace, aws_conn_id=_conf("registry_conn_id") or "aws_default"
        )
    raise ValueError(
        f"[runners] registry: {url!r} is not a registry URL; allowed: '' (local SQLite file), "
        "'sqlite:///PATH', 'dynamodb://TABLE', 'none'"
    )
