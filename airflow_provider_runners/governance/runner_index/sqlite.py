"""The local registry: one SQLite file (default ``$AIRFLOW_HOME/runners/registry.sqlite``).

For one host (docker-compose, a laptop, CI, a single-worker deployment): every process on the
host shares the file, and SQLite's write lock makes each conditional update atomic across them.
For several workers on several hosts use :mod:`~airflow_provider_runners.governance.runner_index.dynamodb`.

**Resources created:** the file and its table ``runners``. **Manual cleanup:** delete the file
(records are an index; nothing else depends on them), or
``sqlite3 registry.sqlite "DELETE FROM runners WHERE status = 'ended'"``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from airflow_provider_runners.governance.runner_index import NOT_ENDED, RunnerRecord, RunnerRegistry

_COLUMNS = [f.name for f in fields(RunnerRecord)]
_REAL = frozenset({"usd_per_hour", "registered_at", "last_heartbeat", "expires_at", "map_index"})
#: Keys per UPDATE: SQLite allows 999 bound parameters in builds before 3.32.
_KEYS_PER_STATEMENT = 900
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runners (namespace TEXT NOT NULL, "
    + ", ".join(f"{name} {'REAL' if name in _REAL else 'TEXT'}" for name in _COLUMNS)
    + ", PRIMARY KEY (namespace, key))"
)


class SqliteRegistry(RunnerRegistry):
    """Registry records in a local SQLite file; see the module docstring."""

    def __init__(self, path: str | Path, namespace: str = "default") -> None:
        super().__init__(namespace)
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"SqliteRegistry({str(self.path)!r}, namespace={self.namespace!r})"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def put(self, record: RunnerRecord) -> None:
        item = record.to_item()
        names = ["namespace", *_COLUMNS]
        with self._connect() as db:
            db.execute(
                f"INSERT OR REPLACE INTO runners ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [self.namespace, *(item[c] for c in _COLUMNS)],
            )

    def _row(self, row: tuple[Any, ...]) -> RunnerRecord:
        return RunnerRecord.from_item(dict(zip(_COLUMNS, row, strict=True)))

    def get(self, key: str) -> RunnerRecord | None:
        with self._connect() as db:
            row = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM runners WHERE namespace = ? AND key = ?",
                (self.namespace, key),
            ).fetchone()
        return self._row(row) if row else None

    def records(self) -> list[RunnerRecord]:
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM runners WHERE namespace = ? ORDER BY registered_at",
                (self.namespace,),
            ).fetchall()
        return [self._row(row) for row in rows]

    def transition(
        self,
        key: str,
        status: str | None = None,
        *,
        expect_status: Iterable[str] | None = None,
        expect_holder: str | None = None,
        **changes: Any,
    ) -> bool:
        if status is not None:
            changes["status"] = status
        unknown = set(changes) - set(_COLUMNS) | ({"key"} & set(changes))
        if unknown:
            raise ValueError(f"cannot change registry fields {sorted(unknown)}")
        if "status" in changes:
            RunnerRecord(key=key, backend="", conn_id="", status=changes["status"])  # validates
        where, params = ["namespace = ?", "key = ?"], [self.namespace, key]
        if expect_status is not None:
            wanted = list(expect_status)
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if expect_holder is not None:
            where.append("holder = ?")
            params.append(expect_holder)
        sets = ", ".join(f"{name} = ?" for name in changes)
        with self._connect() as db:
            cursor = db.execute(
                f"UPDATE runners SET {sets} WHERE {' AND '.join(where)}", [*changes.values(), *params]
            )
            return cursor.rowcount == 1

    def heartbeat_many(self, keys: Iterable[str], now: float | None = None) -> int:
        """One transaction (one commit, one journal sync) for every key, not one per key."""
        now = time.time() if now is None else now
        wanted = list(dict.fromkeys(keys))
        refreshed = 0
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(wanted), _KEYS_PER_STATEMENT):
                    chunk = wanted[start : start + _KEYS_PER_STATEMENT]
                    cursor = db.execute(
                        f"UPDATE runners SET last_heartbeat = ? WHERE namespace = ? "
                        f"AND status IN ({', '.join('?' * len(NOT_ENDED))}) "
                        f"AND key IN ({', '.join('?' * len(chunk))})",
                        [now, self.namespace, *NOT_ENDED, *chunk],
                    )
                    refreshed += cursor.rowcount
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return refreshed

    def delete(self, key: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM runners WHERE namespace = ? AND key = ?", (self.namespace, key))
