"""The warm pool of the ``local_dask`` backend: pre-started clusters a provision claims at once.

Off by default. With the Connection extra ``pool_size`` = N (0-16), the backend keeps up to N
started, *unclaimed* clusters per pool key (the Connection, the environment and the cluster's
shape — workers, threads, memory, dashboard — i.e. one pool per profile as resolved). A provision:

1. claims a running, unclaimed member of its key: an ``O_EXCL`` create of
   ``<state_dir>/<resource_id>.claim`` — exactly one claimer wins, also across processes; the
   member's state file then gets the provision's lineage, handle, ttl and idle timeout (the
   daemon re-reads them), and the provision's runner is ready at once;
2. finds none: starts its own cluster as without a pool (the cold path);
3. either way, refills the pool in the background: starts daemons until N unclaimed members
   of its key are starting or running (under a ``flock`` on ``<state_dir>/pool-<key>.lock``).
   Starting a daemon does not wait for it, and a new member waits ``REFILL_DELAY_S`` before
   it starts its cluster: the claiming run's first job does not compete with the refill for
   the CPUs (on a 2-core worker the refill costs about 3 CPU-seconds; docs/benchmarks.md).

**Isolation.** A claimed cluster belongs to one provision; its teardown ends it like any other
(SIGTERM to its daemon). A member is never handed out twice: its claim file stays.

**Idle members end.** An unclaimed member's ``expires_at`` is its start + ``pool_idle``
seconds (Connection extra, default 600). At that time its daemon claims itself (the same
``O_EXCL``; if a provision won, the daemon keeps running for it) and stops with stop reason
``pool-idle``.

**Resources created** per member: the daemon, its LocalCluster and state/log files of
``backend.py`` (resource id ``ld-pool-<hex>``, lineage key ``pool:<key>``), and a claim file
when claimed. Members are listed by ``list_managed()`` (the reaper and ``airflow-runners reap``
see them; their handle's ``expires_at`` is the idle deadline). **Manual cleanup**: as for any
local_dask runner — ``kill -TERM -<pid>`` of the daemon; ``ls <state_dir>/ld-pool-*.json``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_runners.backends.local_dask.daemon import try_claim, write_state
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY
from airflow_provider_runners.exceptions import ConnectionConfigError

if TYPE_CHECKING:
    from airflow_provider_runners.backends.local_dask.backend import LocalDaskBackend
    from airflow_provider_runners.core.backend import ProvisionRequest

MAX_POOL_SIZE = 16
#: Seconds a refilled member waits before starting its cluster (the daemon's ``start_delay_s``).
#: A member needs 2-3 s to start anyway, so a run arriving meanwhile would not have had it.
REFILL_DELAY_S = 5.0
DEFAULT_POOL_IDLE_S = 600.0
#: The settings that make two clusters interchangeable (the pool key hashes them).
SHAPE_FIELDS = ("workers", "threads_per_worker", "memory_limit", "dashboard")


def pool_config(conn_id: str, extra: dict[str, Any]) -> tuple[int, float]:
    """``(pool_size, pool_idle_s)`` from a Connection's extra; a clear error for a bad value."""
    raw_size = extra.get("pool_size", 0)
    raw_idle = extra.get("pool_idle", DEFAULT_POOL_IDLE_S)
    try:
        size = int(raw_size)
        if isinstance(raw_size, bool) or str(size) != str(raw_size).strip() or not 0 <= size <= MAX_POOL_SIZE:
            raise ValueError
    except (TypeError, ValueError):
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: extra 'pool_size' is {raw_size!r}; allowed: an integer "
            f"from 0 (no warm pool) to {MAX_POOL_SIZE}"
        ) from None
    try:
        idle = float(raw_idle)
        if isinstance(raw_idle, bool) or not 1 <= idle <= 86400:
            raise ValueError
    except (TypeError, ValueError):
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: extra 'pool_idle' is {raw_idle!r}; allowed: seconds from 1 to 86400 "
            f"(default {DEFAULT_POOL_IDLE_S:.0f})"
        ) from None
    return size, idle


def pool_key(conn_id: str, environment: str, profile: str, settings: dict[str, Any]) -> str:
    """Short, file-name-safe key of interchangeable clusters (no secret goes into it)."""
    shape = json.dumps(
        [conn_id, environment, {k: settings.get(k) for k in SHAPE_FIELDS}], sort_keys=True
    ).encode()
    slug = "".join(c for c in profile.lower() if c.isalnum())[:16] or "p"
    return f"{slug}-{hashlib.sha256(shape).hexdigest()[:10]}"


def _claim_path(backend: LocalDaskBackend, resource_id: str) -> Path:
    return backend.state_dir / f"{resource_id}.claim"


def _members(backend: LocalDaskBackend, key: str) -> list[dict[str, Any]]:
    return [s for s in backend._states() if (s.get("pool") or {}).get("key") == key]


def _unclaimed_live(backend: LocalDaskBackend, state: dict[str, Any]) -> bool:
    if state.get("status") not in ("starting", "running"):
        return False
    if _claim_path(backend, state["resource_id"]).exists():
        return False
    return not state.get("pid") or backend._alive(state)


def claim(
    backend: LocalDaskBackend,
    request: ProvisionRequest,
    key: str,
    settings: dict[str, Any],
    handle: RunnerHandle,
) -> RunnerHandle | None:
    """Claim a running member of ``key`` for ``request``; its handle, or None when none is free.

    ``handle`` is the handle a cold start would have had; the claimed one has the member's
    resource id and the same lineage, labels, ttl and profile."""
    for state in _members(backend, key):
        if state.get("status") != "running" or not backend._alive(state):
            continue
        rid = state["resource_id"]
        if not try_claim(backend.state_dir, rid, request.attempt_token):
            continue
        latest = backend._read(rid)
        if latest is None or latest.get("status") != "running" or not backend._alive(latest):
            continue  # died between the listing and the claim: the claim file keeps it out
        now = datetime.now(UTC)
        claimed = handle.evolve(
            resource_id=rid,
            details={
                "state_file": str(backend._state_path(rid)),
                "pid": latest["pid"],
                "pool": key,
                "pool_claimed_at": now.isoformat(),
            },
        )
        latest["settings"] = {**latest["settings"], "idle_timeout_s": settings.get("idle_timeout_s")}
        latest["pool"] = {
            **latest["pool"],
            "claimed_by": request.attempt_token,
            "claimed_at": now.timestamp(),
        }
        latest.update(
            lineage_key=request.lineage.key,
            expires_at=handle.expires_at.isoformat(),
            handle=claimed.to_xcom(),
        )
        write_state(backend._state_path(rid), latest)
        return backend._handle(latest)
    return None


def refill(
    backend: LocalDaskBackend, key: str, settings: dict[str, Any], template: RunnerHandle
) -> list[str]:
    """Start daemons until ``backend.pool_size`` unclaimed members of ``key`` are live; their ids.

    Does not wait for them (each daemon starts in its own session)."""
    backend.state_dir.mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    with open(backend.state_dir / f"pool-{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        live = sum(1 for s in _members(backend, key) if _unclaimed_live(backend, s))
        for _ in range(backend.pool_size - live):
            started.append(_start_member(backend, key, settings, template))
    return started


def _start_member(
    backend: LocalDaskBackend, key: str, settings: dict[str, Any], template: RunnerHandle
) -> str:
    token = f"pool-{secrets.token_hex(6)}"
    rid = f"ld-{token}"
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=backend.pool_idle_s)
    lineage_key = f"pool:{key}"
    handle = RunnerHandle(
        backend=backend.name,
        runner_class=template.runner_class,
        resource_id=rid,
        conn_id=template.conn_id,
        lineage_key=lineage_key,
        attempt_token=token,
        created_at=now,
        expires_at=expires_at,
        environment=template.environment,
        profile=template.profile,
        tags={"managed-by": MANAGED_BY, "runner-env": template.environment, "pool": key},
        details={"state_file": str(backend._state_path(rid)), "pool": key},
    )
    state: dict[str, Any] = {
        "managed_by": MANAGED_BY,
        "resource_id": rid,
        "lineage_key": lineage_key,
        "status": "starting",
        "created_at": now.isoformat(),
        "expires_at": expires_at.isoformat(),
        "settings": {**settings, "idle_timeout_s": None},
        "worker_env_names": sorted(backend.worker_env),
        "handle": handle.to_xcom(),
        "pool": {"key": key, "idle_s": backend.pool_idle_s, "start_delay_s": REFILL_DELAY_S},
    }
    backend._spawn(rid, state)
    return rid
