"""The Runners page: live runners and the evidence ledger per DAG run, inside the Airflow UI.

An Airflow 3 plugin (``airflow.plugins`` entry point) with a FastAPI app mounted by the
api-server at ``/runners`` and an external view (nav: Browse -> Runners) that shows it in
an iframe::

    GET /runners/               HTML page (server-rendered, no JavaScript)   ?dag_id=&run_id=
    GET /runners/api/runners    live runners as JSON
    GET /runners/api/evidence   evidence chains as JSON                      ?dag_id=&run_id=

Airflow does not authenticate plugin apps (a mount inherits none of the core API's
dependencies), so every route depends on Airflow's own ``get_user`` (``Authorization: Bearer``
JWT, else the UI's ``_token`` cookie; 401 without a token, 403 for an invalid one). Then the
auth manager decides what the user sees: evidence rows only for DAGs whose runs they may
read, live runners only with read access to Connections (they name Connections and hosts).

This module is imported by every Airflow component that loads plugins: it imports nothing
heavy. The FastAPI app is built on the first request (:class:`LazyASGIApp`).
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)

URL_PREFIX = "/runners"
#: At most this many evidence chains are read per request (filter by DAG / run to see others).
MAX_CHAINS = 500


# -- data --------------------------------------------------------------------------------------
def _error_text(exc: BaseException) -> str:
    from airflow_provider_runners.core.redact import redact_text

    return redact_text(f"{type(exc).__name__}: {exc}")


def runner_conn_ids() -> tuple[list[str], list[str]]:
    """Ids of the Connections that select a runner backend, and the errors met looking for them
    (:func:`~airflow_provider_runners.backends.registry.configured_conn_ids`)."""
    from airflow_provider_runners.backends.registry import configured_conn_ids

    return configured_conn_ids()


def live_runners() -> list[dict[str, Any]]:
    """One row per live runner of every runner Connection; a failing backend gives an error row."""
    from airflow_provider_runners.backends.registry import get_backend

    conn_ids, errors = runner_conn_ids()
    rows: list[dict[str, Any]] = [{"conn_id": None, "error": error} for error in errors]
    for conn_id in conn_ids:
        try:
            backend = get_backend(conn_id)
            handles = backend.list_managed()
            states = backend.status_many(handles) if handles else {}
        except Exception as exc:  # noqa: BLE001 - one broken backend must not break the page
            rows.append({"conn_id": conn_id, "error": _error_text(exc)})
            continue
        for handle in handles:
            status = states.get(handle.resource_id)
            rate = _rate(handle)
            rows.append(
                {
                    "conn_id": conn_id,
                    "backend": handle.backend,
                    "resource_id": handle.resource_id,
                    "state": str(status.state) if status else "unknown",
                    "message": status.message if status else "",
                    "dag_id": handle.tags.get("dag-id"),
                    "task_id": handle.tags.get("task-id"),
                    "environment": handle.environment,
                    "profile": handle.profile,
                    "created_at": handle.created_at.isoformat(),
                    "expires_at": handle.expires_at.isoformat(),
                    "lineage_key": handle.lineage_key,
                    "dashboard": handle.endpoints.get("dashboard"),
                    "tenant": handle.tags.get("tenant"),
                    "pipeline": handle.tags.get("pipeline"),
                    "usd_per_hour": rate,
                    "error": None,
                }
            )
    return rows


def _rate(handle: Any) -> float | None:
    """$/hour of a live runner (for the budget headroom); None when unknown."""
    from airflow_provider_runners.core.prices import handle_rate

    try:
        return handle_rate(handle)
    except Exception:  # noqa: BLE001 - an unpriced runner must not break the page
        return None


def _catalog() -> Any:
    """The configured catalog (budgets), or None when it cannot be read (the page says so)."""
    from airflow_provider_runners.core.catalog import load_catalog

    try:
        return load_catalog()
    except Exception as exc:  # noqa: BLE001
        log.warning("runners page: cannot read the catalog for budgets: %s", exc)
        return None


def run_states(pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """State of each (dag_id, run_id) DAG run from the metadata DB; missing or unreadable: absent."""
    if not pairs:
        return {}
    try:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(
                select(DagRun.dag_id, DagRun.run_id, DagRun.state).where(
                    DagRun.dag_id.in_({d for d, _ in pairs}), DagRun.run_id.in_({r for _, r in pairs})
                )
            ).all()
    except Exception as exc:  # noqa: BLE001 - no DB at hand: the page shows "unknown"
        log.warning("runners page: cannot read DAG run states: %s", exc)
        return {}
    return {(d, r): str(state.value if hasattr(state, "value") else state) for d, r, state in rows}


def evidence_rows(
    dag_id: str | None = None,
    run_id: str | None = None,
    may_read_dag: Callable[[str], bool] = lambda _dag_id: True,
    states: Callable[[set[tuple[str, str]]], dict[tuple[str, str], str]] | None = None,
) -> list[dict[str, Any]]:
    """One row per evidence chain (runner lineage): ``summarize()`` of the evidence, the verdict and
    the DAG run's state (``run_state``: success, failed, running, ... or unknown)."""
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain
    from airflow_provider_runners.evidence.summary import summarize

    rows = []
    for chain in islice(iter_chains(dag_id or None, run_id or None), MAX_CHAINS):
        report = verify_chain(chain)
        if report.entries:
            row = summarize(report.entries)
        else:
            row = {"dag_id": chain.parent.parent.name, "run_id": chain.parent.name, "lineage_key": chain.name}
            row.update(backend=None, resource_id=None, entries=0, failures=0, torn_down=False, usd=0.0)
        if not may_read_dag(str(row["dag_id"])):
            continue
        row["verified"] = report.ok
        row["problems"] = report.problems
        rows.append(row)
    known = (states or run_states)({(str(r["dag_id"]), str(r["run_id"])) for r in rows})
    for row in rows:
        row["run_state"] = known.get((str(row["dag_id"]), str(row["run_id"])), "unknown")
    return rows


# -- authorization -------------------------------------------------------------------------------
def _dag_reader(user: Any) -> Callable[[str], bool]:
    """``dag_id -> bool``: may ``user`` read this DAG's runs (asked once per DAG)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    manager = get_auth_manager()
    answers: dict[str, bool] = {}

    def may_read(dag_id: str) -> bool:
        if dag_id not in answers:
            answers[dag_id] = manager.is_authorized_dag(
                method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
            )
        return answers[dag_id]

    return may_read


def _may_read_connections(user: Any) -> bool:
    from airflow.api_fastapi.app import get_auth_manager

    return bool(get_auth_manager().is_authorized_connection(method="GET", user=user))


# -- HTML ----------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(headers: list[str], rows: list[str], empty: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(rows) or f'<tr><td colspan="{len(headers)}" class="empty">{_e(empty)}</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def relative(when: str, now: datetime) -> str:
    """``in 25m`` / ``expired 3m ago`` for an ISO timestamp, relative to ``now``."""
    seconds = (datetime.fromisoformat(when) - now).total_seconds()
    size = abs(seconds)
    if size < 90:
        text = f"{size:.0f}s"
    elif size < 5400:
        text = f"{size / 60:.0f}m"
    elif size < 172800:
        text = f"{size / 3600:.1f}h".replace(".0h", "h")
    else:
        text = f"{size / 86400:.0f}d"
    return f"in {text}" if seconds >= 0 else f"expired {text} ago"


def _run_href(dag_id: Any, run_id: Any) -> str:
    """The DAG run's page in the Airflow UI (ui.js opens it as the whole UI, not in the iframe)."""
    return f"/dags/{quote(str(dag_id), safe='')}/runs/{quote(str(run_id), safe='')}"


def _ui_link(href: str, text: str) -> str:
    return f'<a href="{_e(href)}" data-ui-link="top">{_e(text)}</a>'


def _runner_rows(
    runners: list[dict[str, Any]],
    owners: dict[str, dict[str, Any]] | None = None,
    now: datetime | None = None,
) -> list[str]:
    """``owners``: lineage key -> evidence row (its DAG run and the real task id of the provision)."""
    owners = owners or {}
    now = now or datetime.now(UTC)
    rows = []
    for r in runners:
        if r.get("error"):
            rows.append(
                f'<tr class="bad"><td>{_e(r["conn_id"] or "-")}</td>'
                f'<td colspan="8">backend error: {_e(r["error"])}</td></tr>'
            )
            continue
        owner = owners.get(str(r.get("lineage_key")))
        if owner:  # the evidence knows the real ids (labels are squashed: "cluster-provision")
            provision: dict[str, Any] = next(
                (s for s in owner.get("steps", []) if s.get("event") == "provision"), {}
            )
            dag = _ui_link(f"/dags/{quote(str(owner['dag_id']), safe='')}", str(owner["dag_id"]))
            task = _ui_link(_run_href(owner["dag_id"], owner["run_id"]), str(provision.get("task_id") or "-"))
        else:
            dag, task = _e(r["dag_id"]), _e(r["task_id"])
        dashboard = (
            f'<a href="{_e(r["dashboard"])}" data-ui-link="new" rel="noopener">dashboard</a>'
            if r.get("dashboard")
            else "-"
        )
        cells = (
            _e(r["conn_id"]),
            _e(r["backend"]),
            _e(r["resource_id"]),
            _e(f"{r['state']}{': ' + r['message'] if r['message'] else ''}"),
            dag,
            task,
            _e(f"{r['environment']} / {r['profile']}"),
            f'<span title="{_e(r["expires_at"])}">{_e(relative(r["expires_at"], now))}</span>',
            dashboard,
        )
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return rows


def _evidence_rows(evidence: list[dict[str, Any]]) -> list[str]:
    rows = []
    for s in evidence:
        state = str(s.get("run_state") or "unknown")
        state_class = {"success": "ok", "failed": "bad", "upstream_failed": "bad"}.get(state, "muted")
        if s["verified"] and (state in ("failed", "upstream_failed") or s["failures"]):
            # The chain is intact, but it records a failure: not green.
            verdict = '<td class="warn" title="hash chain intact; the run or a step failed">verified</td>'
        elif s["verified"]:
            verdict = '<td class="ok">verified</td>'
        else:
            problems = "".join(f"<li>{_e(p)}</li>" for p in s["problems"])
            verdict = f'<td class="bad">BROKEN<ul>{problems}</ul></td>'
        rows.append(
            f'<tr><td><a href="./?dag_id={quote(str(s["dag_id"]), safe="")}">{_e(s["dag_id"])}</a></td>'
            f"<td>{_ui_link(_run_href(s['dag_id'], s['run_id']), str(s['run_id']))}</td>"
            f'<td class="{state_class}">{_e(state)}</td>'
            f"<td>{_e(s['resource_id'] or '-')}</td><td>{_e(s['backend'] or '-')}</td>"
            f'<td class="num">{_e(s["entries"])}</td><td class="num">{_e(s["failures"])}</td>'
            f"<td>{'yes' if s['torn_down'] else 'NO'}</td>"
            f'<td class="num">${float(s["usd"]):.4f}</td>{verdict}</tr>'
        )
    return rows


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1rem 1.5rem;color:#1f2933}
h1{font-size:1.4rem;margin:0 0 .8rem}h2{font-size:1.1rem;margin:1.4rem 0 .4rem}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{border-bottom:1px solid #d9e2ec;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.ok{color:#0b7a3e;font-weight:600}.bad,td.bad{color:#b42318}td.bad{font-weight:600}
td.bad ul{margin:.2rem 0 0 1rem;padding:0;font-weight:400}td.empty{color:#627d98;font-style:italic}
td.warn{color:#b54708;font-weight:600}td.muted{color:#627d98}
form{margin:0 0 .5rem}input{margin:0 .6rem 0 .2rem;padding:.2rem}.note{color:#627d98;font-size:.85rem}
"""


#: Opens links in the Airflow UI around the iframe (docs/ui.md). The UI's iframe sandbox
#: ("allow-scripts allow-same-origin allow-forms allow-downloads") blocks target=_top, popups and a
#: script in the frame setting ``top.location``; the frame is same-origin, so the script makes a
#: link in the UI's own document and clicks it: a UI route (a DAG, a DAG run) is a full navigation
#: of the whole UI (its router starts on that route), an external URL (a dashboard) opens in a new
#: tab. Outside an iframe the links are plain links.
UI_JS = """
document.addEventListener("click", function (event) {
  var a = event.target.closest && event.target.closest("a[data-ui-link]");
  if (!a || window.parent === window) { return; }
  var top;
  try { top = window.top; void top.document; } catch (e) { return; }
  event.preventDefault();
  var out = top.document.createElement("a");
  out.href = a.href;
  if (a.dataset.uiLink === "top") { out.target = "_self"; } else { out.target = "_blank"; out.rel = "noopener"; }
  out.style.display = "none";
  top.document.body.appendChild(out); out.click(); out.remove();
});
"""


def render_page(
    runners: list[dict[str, Any]] | None,
    evidence: list[dict[str, Any]],
    dag_id: str | None = None,
    run_id: str | None = None,
    now: datetime | None = None,
    pools: list[dict[str, Any]] | None = None,
    catalog: Any = None,
) -> str:
    """The whole page; every value is escaped. ``runners`` None: the user may not see them
    (nor the warm pools, :mod:`~airflow_provider_runners.plugins.pool_view`).
    ``catalog``: for the budget headroom (None: no budgets shown)."""
    from airflow_provider_runners.plugins.pool_view import render_warm_pools
    from airflow_provider_runners.plugins.runners_charts import CSS as CHART_CSS, render_cost_section

    if runners is None:
        runners_html = '<p class="note">Live runners need read access to Connections.</p>'
    else:
        owners = {str(s.get("lineage_key")): s for s in evidence}
        runners_html = _table(
            ["Connection", "Backend", "Resource", "State", "DAG", "Task", "Env / profile", "Expires", "Dask"],
            _runner_rows(runners, owners, now),
            "no live runners",
        )
    evidence_html = _table(
        [
            "DAG",
            "Run",
            "Run state",
            "Runner",
            "Backend",
            "Entries",
            "Failures",
            "Torn down",
            "Cost (USD)",
            "Chain",
        ],
        _evidence_rows(evidence),
        "no evidence" + (" for this filter" if dag_id or run_id else " yet"),
    )
    total = sum(float(s["usd"]) for s in evidence)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Runners</title>'
        f"<style>{_CSS}{CHART_CSS}</style></head><body><h1>Runners</h1>"
        f"<h2>Live runners</h2>{runners_html}{render_warm_pools(pools) if pools is not None else ''}"
        '<h2>Evidence per DAG run</h2><form method="get" action="./">'
        f'<label>DAG <input name="dag_id" value="{_e(dag_id)}"></label>'
        f'<label>Run <input name="run_id" value="{_e(run_id)}"></label>'
        '<button type="submit">Filter</button> <a href="./">clear</a></form>'
        f"{evidence_html}"
        f'<p class="note">{len(evidence)} chain(s), total ${total:.4f}. A chain is verified when every '
        "entry's hash and link, the sequence and HEAD check out (<code>airflow-runners evidence "
        "verify</code>); it is green only when the run and every step succeeded.</p>"
        f"{render_cost_section(evidence, runners, catalog)}"
        '<script src="./ui.js"></script></body></html>'
    )


# -- app -----------------------------------------------------------------------------------------
def create_app() -> FastAPI:
    """The FastAPI app; every route requires an authenticated Airflow user."""
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, Response

    app = FastAPI(
        title="Runners",
        dependencies=[Depends(get_user)],  # the mount inherits nothing from the core API
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    current_user = Depends(get_user)  # resolved once per request, shared with the app-wide check

    @app.get("/", response_class=HTMLResponse)
    def page(dag_id: str | None = None, run_id: str | None = None, user: BaseUser = current_user) -> str:
        from airflow_provider_runners.plugins.pool_view import warm_pools

        runners, pools = (live_runners(), warm_pools()) if _may_read_connections(user) else (None, None)
        evidence = evidence_rows(dag_id, run_id, _dag_reader(user))
        return render_page(runners, evidence, dag_id, run_id, pools=pools, catalog=_catalog())

    @app.get("/ui.js")
    def ui_js() -> Response:
        return Response(UI_JS, media_type="text/javascript")

    @app.get("/api/runners")
    def api_runners(user: BaseUser = current_user) -> dict[str, Any]:
        if not _may_read_connections(user):
            raise HTTPException(status_code=403, detail="live runners need read access to Connections")
        return {"runners": live_runners()}

    @app.get("/api/evidence")
    def api_evidence(
        dag_id: str | None = None, run_id: str | None = None, user: BaseUser = current_user
    ) -> dict[str, Any]:
        return {
            "dag_id": dag_id,
            "run_id": run_id,
            "evidence": evidence_rows(dag_id, run_id, _dag_reader(user)),
        }

    return app


class LazyASGIApp:
    """An ASGI app that builds the real one on its first request (plugins load in every component)."""

    def __init__(self, factory: Callable[[], FastAPI]) -> None:
        self._factory = factory
        self._app: FastAPI | None = None
        self._lock = threading.Lock()

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


runners_app = LazyASGIApp(create_app)


class RunnersPlugin(AirflowPlugin):
    name = "runners"
    # Airflow reads these class attributes (declared on AirflowPlugin as plain lists).
    fastapi_apps = [  # noqa: RUF012
        {"app": runners_app, "url_prefix": URL_PREFIX, "name": "Runners"}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Runners",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "runners",
        }
    ]
