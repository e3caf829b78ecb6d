"""Triggers that start together read their Connection once (triggers/shared_backend.py).

In a triggerer each Connection read is a request to its supervisor; 1000 triggers starting at
once made 1000 of them (docs/benchmarks.md, a real triggerer with Kubernetes pods).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from airflow_provider_runners.backends import registry
from airflow_provider_runners.triggers import shared_backend

CONN = "runners_shared_backend_unit"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Connection read made through Airflow, by id."""
    asked: list[str] = []
    real = registry._get_connection

    def counted(conn_id: str) -> Any:
        asked.append(conn_id)
        return real(conn_id)

    monkeypatch.setattr(registry, "_get_connection", counted)
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN.upper()}", json.dumps({"conn_type": "runners_ssh", "host": "a.example"})
    )
    return asked


def test_a_thousand_triggers_starting_together_read_their_connection_once(reads: list[str]) -> None:
    async def start_all() -> list[Any]:
        return await asyncio.gather(*(shared_backend.backend_for(CONN) for _ in range(1000)))

    backends = asyncio.run(start_all())
    assert reads == [CONN]
    assert len({id(b) for b in backends}) == 1
    assert backends[0].config.host == "a.example"


def test_a_backend_is_reused_for_its_ttl_then_read_again(
    reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(shared_backend, "_clock", lambda: now[0])
    first = asyncio.run(shared_backend.backend_for(CONN))
    now[0] += shared_backend.BACKEND_TTL_S - 1
    assert asyncio.run(shared_backend.backend_for(CONN)) is first
    now[0] += 2
    assert asyncio.run(shared_backend.backend_for(CONN)) is not first
    assert reads == [CONN, CONN]


def test_a_connection_changed_in_the_environment_is_read_at_once(
    reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = asyncio.run(shared_backend.backend_for(CONN))
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN.upper()}", json.dumps({"conn_type": "runners_ssh", "host": "b.example"})
    )
    second = asyncio.run(shared_backend.backend_for(CONN))
    assert (first.config.host, second.config.host) == ("a.example", "b.example")
    assert reads == [CONN, CONN]


def test_a_failed_read_reaches_every_waiter_and_is_not_kept(
    reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", json.dumps({"conn_type": "no_such_type"}))

    async def start_all() -> list[Any]:
        return await asyncio.gather(
            *(shared_backend.backend_for(CONN) for _ in range(5)), return_exceptions=True
        )

    errors = asyncio.run(start_all())
    assert all(isinstance(e, Exception) for e in errors), errors
    assert "no_such_type" in str(errors[0])
    assert reads == [CONN]
    asyncio.run(start_all())
    assert reads == [CONN, CONN]  # not kept: the next start reads again


def test_one_waiter_cancelled_does_not_cancel_the_read_for_the_others(reads: list[str]) -> None:
    async def run() -> Any:
        first = asyncio.create_task(shared_backend.backend_for(CONN))
        second = asyncio.create_task(shared_backend.backend_for(CONN))
        await asyncio.sleep(0)
        first.cancel()
        return await second

    assert asyncio.run(run()).config.host == "a.example"
    assert reads == [CONN]
