"""The Runners page on a real deployment, in headless Chromium (Debian's ``chromium`` driven by
Playwright; no browser is downloaded).

* on the shared ``airflow_stack`` (SimpleAuthManager, all admins): after a REST-triggered ETL run,
  ``/runners/`` shows the run, its runner, its cost and "verified", alone and embedded in the
  Airflow UI (nav: Browse -> Runners, ``/plugin/runners``);
* on a second api-server of the same deployment with real logins: no token is a 401 from every
  route, the UI's ``_token`` cookie opens the page, a viewer sees evidence but not live runners.

Screenshots are written to the test's tmp dir (path printed; ``pytest -s`` shows it); with
``RUNNERS_DOCS_SCREENSHOTS=1`` the ones docs/ui.md shows are also copied to docs/img/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.conftest import Stack, _free_port, _start, _stop

pytestmark = pytest.mark.e2e

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USERS = {"alice": ("admin", "pw-alice-e2e"), "vic": ("viewer", "pw-vic-e2e")}


def _missing(reason: str) -> None:
    if os.environ.get("RUNNERS_E2E_REQUIRED"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _missing("chromium is not installed (apt-get update -qq && apt-get install -y -qq chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def etl_run(airflow_stack: Stack) -> dict[str, Any]:
    """A finished ``local_dask_etl`` run and its evidence summary (as the CLI computes it)."""
    airflow_stack.wait_for_dag("local_dask_etl")
    run_id = airflow_stack.trigger("local_dask_etl", {"rows": 50_000})
    assert airflow_stack.wait_for_run("local_dask_etl", run_id) == "success"
    os.environ["AIRFLOW__RUNNERS__EVIDENCE_PATH"] = airflow_stack.env["AIRFLOW__RUNNERS__EVIDENCE_PATH"]
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain
    from airflow_provider_runners.evidence.summary import summarize

    (chain,) = iter_chains(dag_id="local_dask_etl", run_id=run_id)
    report = verify_chain(chain)
    assert report.ok, report.problems
    return summarize(report.entries)


DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
#: The screenshots docs/ui.md shows (refreshed by RUNNERS_DOCS_SCREENSHOTS=1).
DOCS_SCREENSHOTS = {
    "runners-page",
    "airflow-ui-browse-runners",
    "airflow-ui-run-from-runners-link",
    "connection-form-ec2",
}


def _screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
    print(f"screenshot: {path}")
    if os.environ.get("RUNNERS_DOCS_SCREENSHOTS") and name in DOCS_SCREENSHOTS:
        DOCS_IMG.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / path.name)
    return path


def _assert_shows_run(text: str, run: dict[str, Any]) -> None:
    for expected in (run["run_id"], run["resource_id"], f"${run['usd']:.4f}", "verified", "local_dask"):
        assert expected in text, (expected, text[:2000])
    assert "BROKEN" not in text


def test_airflow_lists_the_plugin_once(airflow_stack: Stack) -> None:
    airflow = str(Path(sys.executable).with_name("airflow"))
    out = subprocess.run(
        [airflow, "plugins", "-o", "json"], env=airflow_stack.env, capture_output=True, text=True, check=True
    ).stdout
    plugins = json.loads(out[0 if out.startswith("[") else out.index("\n[") + 1 :])
    assert [p["name"] for p in plugins].count("runners") == 1
    with airflow_stack.client() as http:
        body = http.get("/api/v2/plugins").json()
        assert [p["name"] for p in body["plugins"]].count("runners") == 1
        (runners,) = [p for p in body["plugins"] if p["name"] == "runners"]
        assert runners["external_views"][0]["url_route"] == "runners"
        assert not http.get("/api/v2/plugins/importErrors").json()["import_errors"]


def test_runners_page_in_chromium(
    airflow_stack: Stack, etl_run: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    response = page.goto(f"{airflow_stack.api}/runners/")
    assert response is not None
    assert response.status == 200
    assert page.title() == "Runners"
    _assert_shows_run(page.inner_text("body"), etl_run)
    row = page.locator("tr", has_text=etl_run["run_id"])
    assert row.locator("td.ok", has_text="verified").count() == 1  # the verdict (the run state is ok too)
    assert row.locator("td").nth(2).inner_text() == "success"  # the DAG run's state
    assert row.locator("td").nth(7).inner_text() == "yes"  # torn down
    # cost over time per tenant and per pipeline (inline SVG) and the budget headroom table
    assert page.locator("h2", has_text="Cost and budgets").count() == 1
    assert page.locator("svg.chart").count() == 2
    assert page.locator(".legend .key").count() >= 2  # a series per chart (local_dask costs $0: no bar)
    assert page.locator("h3", has_text="Budget headroom").count() == 1
    _screenshot(page, tmp_path, "runners-page")
    # the filter form narrows to one DAG run
    page.fill("input[name=run_id]", etl_run["run_id"])
    page.click("button[type=submit]")
    page.wait_for_url("**run_id=**")
    assert page.locator("tbody tr").count() >= 2
    assert etl_run["resource_id"] in page.inner_text("body")
    page.close()


#: The sandbox the Airflow UI puts on a plugin's iframe (docs/ui.md).
UI_SANDBOX = "allow-scripts allow-same-origin allow-forms allow-downloads"


def test_ui_js_navigates_the_whole_window_from_the_ui_sandbox(browser: Any, tmp_path: Path) -> None:
    """Without Airflow: a page in an iframe with the UI's sandbox, ui.js, one click -> the top
    window is on the link's page and the iframe is gone (a full navigation, not a route push)."""
    import functools
    import http.server
    import threading

    from airflow_provider_runners.plugins.runners_ui import UI_JS

    (tmp_path / "top.html").write_text(
        f'<h1>UI</h1><iframe src="/frame.html" sandbox="{UI_SANDBOX}"></iframe>'
    )
    (tmp_path / "frame.html").write_text(
        f'<a id="run" href="/dags/d/runs/r1.html" data-ui-link="top">r1</a><script>{UI_JS}</script>'
    )
    (tmp_path / "dags" / "d" / "runs").mkdir(parents=True)
    (tmp_path / "dags" / "d" / "runs" / "r1.html").write_text("<h1>run r1</h1>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/top.html")
        page.frames[1].click("#run")
        page.wait_for_url("**/dags/d/runs/r1.html", timeout=10_000)
        assert page.inner_text("h1") == "run r1"
        assert page.locator("iframe").count() == 0
        page.close()
    finally:
        server.shutdown()
        server.server_close()


def test_runners_view_embedded_in_the_airflow_ui(
    airflow_stack: Stack, etl_run: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{airflow_stack.api}/plugin/runners")
    frame_element = page.wait_for_selector("iframe", timeout=60_000)
    assert frame_element is not None
    assert "/runners/" in (frame_element.get_attribute("src") or "")
    frame = frame_element.content_frame()
    assert frame is not None
    frame.wait_for_selector("text=Evidence per DAG run", timeout=30_000)
    _assert_shows_run(frame.inner_text("body"), etl_run)
    page.wait_for_timeout(1_000)  # let the UI shell finish painting around the iframe
    _screenshot(page, tmp_path, "airflow-ui-browse-runners")
    # A run link opens the run in the Airflow UI itself (the iframe sandbox blocks target=_top;
    # the page's ui.js clicks a link made in the UI's document: a full navigation of the UI).
    frame.locator("a", has_text=etl_run["run_id"]).first.click()
    page.wait_for_url(f"**/dags/local_dask_etl/runs/{quote(etl_run['run_id'], safe='')}**", timeout=30_000)
    assert page.locator("iframe[src*='/runners/']").count() == 0  # the UI left the Runners view
    page.wait_for_selector("text=local_dask_etl", timeout=30_000)
    page.wait_for_timeout(1_000)
    _screenshot(page, tmp_path, "airflow-ui-run-from-runners-link")
    page.close()


def test_connection_form_shows_the_typed_fields(airflow_stack: Stack, browser: Any, tmp_path: Path) -> None:
    """Add Connection -> a runners_* type: the form shows its conn-fields (labels, inputs)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{airflow_stack.api}/connections")
    page.get_by_role("button", name="Add Connection").click()
    # react-select: its input's wrapper lies over the placeholder; the mouse-down reaches the
    # control through the placeholder, which opens and focuses the select
    page.get_by_text("Select Connection Type").click(force=True)
    page.keyboard.type("EC2 dedicated host")
    page.keyboard.press("Enter")
    field = page.get_by_text("Warm-pool claim table (DynamoDB)")
    try:
        field.wait_for(timeout=5_000)
    except Exception:  # noqa: BLE001 - the Extra Fields section is collapsed
        page.get_by_text("Extra Fields", exact=True).first.click()
    field.wait_for(timeout=15_000)
    for label in ("Region", "AWS Connection", "Instance profile", "Warm-pool idle TTL"):
        assert page.get_by_text(label, exact=True).count() >= 1, label
    # (Airflow 3.3's form shows ui-field-behaviour placeholders on the standard fields only)
    assert page.locator("input[name$='region_name']").count() >= 1
    page.wait_for_timeout(500)
    _screenshot(page, tmp_path, "connection-form-ec2")
    page.close()


# -- real logins: a second api-server of the same deployment without all-admins -------------------
@pytest.fixture(scope="module")
def secured_api(airflow_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("secured-api")
    passwords = logs / "passwords.json"
    passwords.write_text(json.dumps({user: pw for user, (_role, pw) in USERS.items()}))
    port = _free_port()
    env = {
        **airflow_stack.env,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, (r, _pw) in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }
    stack = replace(airflow_stack, home=logs, env=env, api=f"http://127.0.0.1:{port}", procs={})
    _start(stack, "api-server")
    try:
        stack.wait_healthy()
        yield stack.api
    finally:
        for proc in stack.procs.values():
            _stop(proc)


def _login(api: str, user: str) -> str:
    response = httpx.post(f"{api}/auth/token", json={"username": user, "password": USERS[user][1]})
    assert response.status_code == 201, response.text
    return str(response.json()["access_token"])


def test_runners_routes_require_an_airflow_login(secured_api: str, etl_run: dict[str, Any]) -> None:
    for route in ("/runners/", "/runners/api/runners", "/runners/api/evidence"):
        response = httpx.get(secured_api + route)
        assert response.status_code == 401, (route, response.status_code)
        assert etl_run["run_id"] not in response.text
        forged = httpx.get(secured_api + route, headers={"Authorization": "Bearer not.a.jwt"})
        assert forged.status_code == 403
    assert httpx.get(f"{secured_api}/api/v2/dags").status_code == 401  # same answer as the core API
    admin = {"Authorization": f"Bearer {_login(secured_api, 'alice')}"}
    assert httpx.get(f"{secured_api}/runners/api/runners", headers=admin).status_code == 200
    evidence = httpx.get(f"{secured_api}/runners/api/evidence", headers=admin).json()["evidence"]
    assert etl_run["run_id"] in [row["run_id"] for row in evidence]
    viewer = {"Authorization": f"Bearer {_login(secured_api, 'vic')}"}
    assert httpx.get(f"{secured_api}/runners/api/runners", headers=viewer).status_code == 403
    rows = httpx.get(f"{secured_api}/runners/api/evidence", headers=viewer).json()["evidence"]
    assert etl_run["run_id"] in [row["run_id"] for row in rows]


def test_browser_needs_the_ui_token_cookie(
    secured_api: str, etl_run: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    response = page.goto(f"{secured_api}/runners/")
    assert response is not None
    assert response.status == 401
    assert etl_run["run_id"] not in page.content()
    context.add_cookies([{"name": "_token", "value": _login(secured_api, "alice"), "url": secured_api}])
    response = page.goto(f"{secured_api}/runners/")
    assert response is not None
    assert response.status == 200
    _assert_shows_run(page.inner_text("body"), etl_run)
    _screenshot(page, tmp_path, "runners-page-logged-in")
    context.close()
