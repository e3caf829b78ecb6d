"""``idle_timeout`` on a local host: the activity mark and the idle test (docs/cost.md, "Idle timeout").

A local host is idle while none of its commands runs. ``<state_dir>/<resource_id>.active`` is
its activity mark: created with the host, touched when a command starts and when it ends. The
backend ends a host (teardown, as for its ttl) on first sight — ``status``, ``find``, the
reaper's ``list_managed`` — once no command runs and the mark is older than the spec's
``idle_timeout`` (the handle's ``idle-timeout`` tag). The reaper then finds it gone and closes
its evidence chain (``end``, ``by: backstop``).

**Resources created:** the ``.active`` file (removed by teardown). **Manual cleanup:**
``rm <state_dir>/<resource_id>.active`` with the rest of the host's files.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow_provider_runners.core.backend import idle_timeout_seconds
from airflow_provider_runners.core.handles import RunnerHandle


def mark_active(path: Path, now: datetime) -> None:
    """Record activity at ``now`` (the backend's clock, so tests control it)."""
    path.touch(exist_ok=True)
    stamp = now.timestamp()
    os.utime(path, (stamp, stamp))


def idle_too_long(handle: RunnerHandle, mark: Path, running: int, now: datetime) -> str | None:
    """Why the host should end for idleness (``"idle for 610s >= idle_timeout 600s"``), or None:
    it has no idle timeout, a command runs (which counts as activity now), or it was active lately."""
    limit = idle_timeout_seconds(handle.tags)
    if limit is None:
        return None
    if running:
        mark_active(mark, now)
        return None
    try:
        last = mark.stat().st_mtime
    except OSError:
        last = handle.created_at.timestamp()
    idle = now.timestamp() - last
    return f"idle for {idle:.0f}s >= idle_timeout {limit:.0f}s" if idle >= limit else None
