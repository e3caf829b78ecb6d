"""The Runners UI plugin: auth through Airflow's own dependency, real ledgers, escaping, failures.

Tokens are real JWTs signed by the configured auth manager (SimpleAuthManager), exactly as the
api-server issues them; no dependency is overridden anywhere in this module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_provider_runners.backends import registry
from airflow_provider_runners.core.backend import RunnerState, RunnerStatus
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.evidence.ledger import append
from airflow_provider_runners.plugins import runners_ui
from airflow_provider_runners.plugins.runners_ui import RunnersPlugin, runners_app
from tests.conftest import REPO

XSS_DAG = "etl<script>alert(1)</script>"
ROUTES = ("/", "/api/runners", "/api/evidence", "/ui.js")


@pytest.fixture(scope="module")
def auth_manager() -> Any:
    """The configured auth manager as the api-server creates it, on a migrated metadata DB
    (token validation checks the revoked-token table; the page lists Connections)."""
    from airflow.api_fastapi.app import create_auth_manager, get_auth_manager_cls
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    assert get_auth_manager_cls() is SimpleAuthManager
    return create_auth_manager()


def token(auth_manager: Any, role: str | None = "ADMIN") -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(auth_manager.generate_jwt(SimpleAuthManagerUser(username=f"user-{role}", role=role)))


@pytest.fixture
def client(auth_manager: Any) -> Iterator[TestClient]:
    with TestClient(runners_app.app) as http:
        yield http


def bearer(auth_manager: Any, role: str | None = "ADMIN") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(auth_manager, role)}"}


def write_chain(dag_id: str, run_id: str, key: str, resource_id: str, usd: float) -> None:
    runner = {"backend": "local_dask", "resource_id": resource_id, "tags": {"tenant": "t1"}}
    for event, task_id, outcome, cost in (
        ("provision", "cluster.provision", "success", {"usd": 0.5}),
        ("work", "cluster.generate", "success", {"usd": usd / 2}),
        ("teardown", "cluster.teardown", "success", {"usd": usd}),
    ):
        payload = {"outcome": outcome, "task_id": task_id, "runner": runner, "cost": cost}
        append(dag_id, run_id, key, event, {**payload, "timings": {"duration_s": 1.5}})


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three chains in a fresh ledger: an intact one, a tampered one, one whose dag_id is hostile."""
    monkeypatch.setenv("AIRFLOW__RUNNERS__EVIDENCE_PATH", "file://" + str(tmp_path))
    write_chain("etl_daily", "manual__run-1", "rlaaaa", "ldask-good-1", 0.0123)
    write_chain("etl_daily", "manual__run-2", "rlbbbb", "ldask-tampered-2", 0.02)
    write_chain(XSS_DAG, "manual__run-3", "rlcccc", "ldask-xss-3", 0.001)
    (second,) = (tmp_path / "etl_daily" / "manual__run-2" / "rlbbbb").glob("000002-*.json")
    entry = json.loads(second.read_text())
    entry["outcome"] = "failed"  # an edit after the fact
    second.write_text(json.dumps(entry))
    return tmp_path


# -- authentication: enforced by Airflow's own get_user, no override ----------------------------
@pytest.mark.parametrize("route", ROUTES)
def test_every_route_refuses_a_request_without_a_token(client: TestClient, route: str) -> None:
    response = client.get(route)
    assert response.status_code == 401
    assert "etl_daily" not in response.text


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_refuses_a_forged_or_garbage_token(
    client: TestClient, auth_manager: Any, route: str
) -> None:
    forged = token(auth_manager)[:-4] + "AAAA"
    assert client.get(route, headers={"Authorization": f"Bearer {forged}"}).status_code == 403
    client.cookies.set("_token", "not-a-jwt")
    assert client.get(route).status_code == 403


def test_the_ui_cookie_authenticates_like_the_airflow_ui(client: TestClient, auth_manager: Any) -> None:
    client.cookies.set("_token", token(auth_manager))
    assert client.get("/").status_code == 200


# -- content --------------------------------------------------------------------------------------
def test_page_shows_each_dag_run_with_cost_and_verdict(
    client: TestClient, auth_manager: Any, ledger: Path
) -> None:
    response = client.get("/", headers=bearer(auth_manager))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for text in ("manual__run-1", "ldask-good-1", "local_dask", "$0.0123", "verified", "Live runners"):
        assert text in page
    assert "BROKEN" in page
    assert "000002-work.json: hash mismatch: the entry was edited" in page
    # a hostile dag_id is shown, escaped, and never becomes markup
    assert "<script>" not in page
    assert "etl&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.lower().count("<script") == 1  # only the page's own link helper
    assert '<script src="./ui.js"></script>' in page
    assert "http" not in page


def test_evidence_json_matches_the_cli_summary(client: TestClient, auth_manager: Any, ledger: Path) -> None:
    body = client.get("/api/evidence", headers=bearer(auth_manager)).json()
    rows = {row["run_id"]: row for row in body["evidence"]}
    assert set(rows) == {"manual__run-1", "manual__run-2", "manual__run-3"}
    good, bad = rows["manual__run-1"], rows["manual__run-2"]
    assert (good["resource_id"], good["backend"], good["entries"], good["failures"]) == (
        "ldask-good-1",
        "local_dask",
        3,
        0,
    )
    assert good["torn_down"] is True
    assert good["usd"] == 0.0123
    assert good["verified"] is True
    assert good["problems"] == []
    assert [s["event"] for s in good["steps"]] == ["provision", "work", "teardown"]
    assert bad["verified"] is False
    assert bad["failures"] == 1
    assert any("hash mismatch" in p for p in bad["problems"])
    assert rows["manual__run-3"]["dag_id"] == XSS_DAG


def test_filters_by_dag_and_run(client: TestClient, auth_manager: Any, ledger: Path) -> None:
    headers = bearer(auth_manager)
    body = client.get("/api/evidence", params={"dag_id": "etl_daily"}, headers=headers).json()
    assert sorted(r["run_id"] for r in body["evidence"]) == ["manual__run-1", "manual__run-2"]
    body = client.get(
        "/api/evidence", params={"dag_id": "etl_daily", "run_id": "manual__run-2"}, headers=headers
    ).json()
    assert [r["resource_id"] for r in body["evidence"]] == ["ldask-tampered-2"]
    page = client.get("/", params={"dag_id": "etl_daily", "run_id": "manual__run-1"}, headers=headers).text
    assert "ldask-good-1" in page
    assert "ldask-tampered-2" not in page
    assert "ldask-xss-3" not in page
    assert 'value="manual__run-1"' in page
    page = client.get("/", params={"dag_id": "nope"}, headers=headers).text
    assert "no evidence for this filter" in page


def test_filter_values_are_escaped_in_the_form(client: TestClient, auth_manager: Any, ledger: Path) -> None:
    page = client.get("/", params={"dag_id": '"><script>x()</script>'}, headers=bearer(auth_manager)).text
    assert "<script>" not in page
    assert 'value="&quot;&gt;&lt;script&gt;x()&lt;/script&gt;"' in page


# -- authorization: the auth manager decides what a user sees -------------------------------------
def test_viewer_sees_evidence_but_not_live_runners(
    client: TestClient, auth_manager: Any, ledger: Path
) -> None:
    headers = bearer(auth_manager, "VIEWER")
    assert client.get("/api/runners", headers=headers).status_code == 403
    page = client.get("/", headers=headers)
    assert page.status_code == 200
    assert "Live runners need read access to Connections" in page.text
    assert "ldask-good-1" in page.text


def test_user_without_a_role_sees_no_evidence(client: TestClient, auth_manager: Any, ledger: Path) -> None:
    headers = bearer(auth_manager, None)
    assert client.get("/api/evidence", headers=headers).json()["evidence"] == []
    assert "ldask-good-1" not in client.get("/", headers=headers).text


# -- live runners ----------------------------------------------------------------------------------
class FakeBackend:
    def __init__(self, handles: list[RunnerHandle]) -> None:
        self.handles = handles

    def list_managed(self) -> list[RunnerHandle]:
        return self.handles

    def status_many(self, handles: list[RunnerHandle]) -> dict[str, RunnerStatus]:
        return {h.resource_id: RunnerStatus(RunnerState.READY, "scheduler up") for h in handles}


def handle(resource_id: str, dag_id: str) -> RunnerHandle:
    now = datetime.now(UTC)
    return RunnerHandle(
        backend="local_dask",
        runner_class="dask_cluster",
        resource_id=resource_id,
        conn_id="runners_lab",
        lineage_key="rlabc",
        attempt_token="rlabc-t1",
        created_at=now,
        expires_at=now + timedelta(hours=1),
        environment="local",
        profile="small",
        tags={"dag-id": dag_id, "task-id": "cluster.provision"},
    )


def test_live_runners_of_every_runner_connection_and_a_failing_backend(
    client: TestClient, auth_manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RUNNERS_LAB", json.dumps({"conn_type": "runners_local_dask"}))
    monkeypatch.setenv("AIRFLOW_CONN_RUNNERS_BROKEN", json.dumps({"conn_type": "runners_local_dask"}))
    monkeypatch.setenv("AIRFLOW_CONN_SOMETHING_ELSE", json.dumps({"conn_type": "postgres"}))
    asked: list[str] = []

    def fake_get_backend(conn_id: str) -> Any:
        asked.append(conn_id)
        if conn_id == "runners_broken":
            raise RuntimeError("API down for https://bot:hunter2@cloud.example")
        if conn_id == "runners_lab":
            return FakeBackend([handle("ldask-live-1", "etl-<b>daily</b>")])
        return FakeBackend([])

    monkeypatch.setattr(registry, "get_backend", fake_get_backend)
    response = client.get("/api/runners", headers=bearer(auth_manager))
    assert response.status_code == 200
    assert sorted(asked) == ["runners_broken", "runners_default", "runners_lab", "runners_local_host"]
    rows = {row["conn_id"]: row for row in response.json()["runners"]}
    assert rows["runners_lab"]["resource_id"] == "ldask-live-1"
    assert rows["runners_lab"]["state"] == "ready"
    assert "API down" in rows["runners_broken"]["error"]
    assert "hunter2" not in rows["runners_broken"]["error"]
    page = client.get("/", headers=bearer(auth_manager)).text
    assert "ldask-live-1" in page
    assert "ready: scheduler up" in page
    assert "backend error: RuntimeError: API down" in page
    assert "hunter2" not in page
    assert "etl-&lt;b&gt;daily&lt;/b&gt;" in page


def test_the_default_connection_uses_the_real_local_dask_backend(
    client: TestClient, auth_manager: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))  # an empty local_dask state dir
    body = client.get("/api/runners", headers=bearer(auth_manager)).json()
    assert body == {"runners": []}


def test_listing_connections_failing_is_shown_not_raised(
    client: TestClient, auth_manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_db() -> list[str]:
        raise RuntimeError("database is down")

    monkeypatch.setattr(registry, "_db_runner_conn_ids", broken_db)
    monkeypatch.setattr(registry, "get_backend", lambda conn_id: FakeBackend([]))
    rows = client.get("/api/runners", headers=bearer(auth_manager)).json()["runners"]
    assert rows == [{"conn_id": None, "error": "listing Connections: RuntimeError: database is down"}]


# -- registration and import cost ------------------------------------------------------------------
def test_plugin_declares_the_app_and_the_nav_view() -> None:
    (app,) = RunnersPlugin.fastapi_apps
    assert app["url_prefix"] == "/runners"
    assert app["app"] is runners_app
    (view,) = RunnersPlugin.external_views
    assert view == {
        "name": "Runners",
        "href": "/runners/",
        "destination": "nav",
        "category": "browse",
        "url_route": "runners",
    }
    (ep,) = [ep for ep in entry_points(group="airflow.plugins") if ep.name == "runners"]
    assert ep.load() is RunnersPlugin
    assert runners_ui.MAX_CHAINS >= 100


def test_importing_the_plugin_is_cheap() -> None:
    code = (
        "import sys; from airflow_provider_runners.plugins import runners_ui as m;"
        "heavy = [n for n in ('dask', 'distributed', 'pandas', 'pyarrow', 'fastapi') if n in sys.modules];"
        "assert m.runners_app._app is None; print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


def test_runner_connections_in_the_metadata_database_are_listed(
    client: TestClient, auth_manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.add(Connection(conn_id="runners_in_db", conn_type="runners_local_dask"))
        session.add(Connection(conn_id="pg_in_db", conn_type="postgres"))
    try:
        asked: list[str] = []
        monkeypatch.setattr(registry, "get_backend", lambda conn_id: asked.append(conn_id) or FakeBackend([]))
        assert client.get("/api/runners", headers=bearer(auth_manager)).status_code == 200
        assert sorted(asked) == ["runners_default", "runners_in_db", "runners_local_host"]
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id.in_(["runners_in_db", "pg_in_db"])).delete()


# -- run state, relative expiry, real task ids, links that work inside the Airflow UI ----------------
def test_a_failed_run_is_not_green_even_with_an_intact_chain(
    client: TestClient, auth_manager: Any, ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        runners_ui, "run_states", lambda pairs: {("etl_daily", "manual__run-1"): "failed"} if pairs else {}
    )
    page = client.get("/", headers=bearer(auth_manager)).text
    row = next(r for r in page.split("<tr>") if "manual__run-1" in r)
    assert '<td class="bad">failed</td>' in row
    assert '<td class="warn" title="hash chain intact; the run or a step failed">verified</td>' in row
    assert 'class="ok"' not in row
    other = next(r for r in page.split("<tr>") if "manual__run-3" in r)
    assert '<td class="muted">unknown</td>' in other  # no such run in the metadata DB
    rows = client.get("/api/evidence", headers=bearer(auth_manager)).json()["evidence"]
    assert {r["run_id"]: r["run_state"] for r in rows}["manual__run-1"] == "failed"


def test_run_states_are_read_from_the_metadata_db(auth_manager: Any) -> None:
    assert runners_ui.run_states({("no_such_dag", "no_such_run")}) == {}


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(minutes=25), "in 25m"),
        (timedelta(seconds=40), "in 40s"),
        (timedelta(hours=5), "in 5h"),
        (timedelta(days=3), "in 3d"),
        (-timedelta(minutes=3), "expired 3m ago"),
    ],
)
def test_expiry_is_relative(delta: timedelta, text: str) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert runners_ui.relative((now + delta).isoformat(), now) == text


def test_live_runner_rows_show_real_task_ids_run_links_and_the_dashboard() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    live = {
        "conn_id": "runners_default",
        "backend": "local_dask",
        "resource_id": "ldask-1",
        "state": "ready",
        "message": "",
        "dag_id": "etl-daily",  # labels are squashed
        "task_id": "cluster-provision",
        "environment": "local",
        "profile": "small",
        "created_at": now.isoformat(),
        "expires_at": (now + timedelta(minutes=30)).isoformat(),
        "lineage_key": "rlaaaa",
        "dashboard": "http://127.0.0.1:8787/status",
        "error": None,
    }
    evidence = [
        {
            "dag_id": "etl_daily",
            "run_id": "manual__run 1",
            "lineage_key": "rlaaaa",
            "steps": [{"event": "provision", "task_id": "cluster.provision"}],
            "resource_id": "ldask-1",
            "backend": "local_dask",
            "entries": 1,
            "failures": 0,
            "torn_down": False,
            "usd": 0.0,
            "verified": True,
            "problems": [],
            "run_state": "running",
        }
    ]
    page = runners_ui.render_page([live], evidence, now=now)
    assert '<a href="/dags/etl_daily/runs/manual__run%201" data-ui-link="top">cluster.provision</a>' in page
    assert '<a href="/dags/etl_daily" data-ui-link="top">etl_daily</a>' in page
    assert "cluster-provision" not in page
    assert f'<span title="{live["expires_at"]}">in 30m</span>' in page
    assert '<a href="http://127.0.0.1:8787/status" data-ui-link="new" rel="noopener">dashboard</a>' in page
    assert 'target="_top"' not in page  # the UI's iframe sandbox blocks it: ui.js navigates instead


def test_ui_js_is_served_to_logged_in_users(client: TestClient, auth_manager: Any) -> None:
    response = client.get("/ui.js", headers=bearer(auth_manager))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    # a link made in the UI's own document: a full navigation of the UI, not a pushState its
    # router would not take (tests/e2e/test_ui.py clicks one)
    assert 'top.document.createElement("a")' in response.text
    assert 'out.target = "_self"' in response.text
    assert "pushState" not in response.text
