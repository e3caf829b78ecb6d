"""``bench_http``: benches reserved through an HTTP bench platform (conn type ``runners_bench_http``).

The platform speaks the contract in ``docs/bench_http.openapi.yaml`` (docs/benches.md; the
infra-bench-platform: ``reserve(bench_id | tags)`` / status / ``release``). Benches exist; this
backend never creates one. A spec selects a bench by ``options.bench_id`` (or ``place``) or by
``options.tags`` (see :func:`~airflow_provider_runners.core.bench_options.parse_bench_options`).

**Lifecycle.** ``create`` POSTs a reservation (owner ``<owner_host>/<lineage key>``, lineage =
the lineage key, ``ttl_s`` = until the request's ``expires_at``) and returns at once; the platform queues it until a
matching bench is free, then prepares it (its own readiness check). The trigger's shared poller
reads every waiter's state in one ``GET /reservations?ids=...`` per tick; ``ready`` (and the
optional health command, run on the worker with ``BENCH_ID`` exported) = READY. ``teardown``
DELETEs the reservation (404 = already gone = success) and reads back ``released``.

A retry finds its reservation with ``GET /reservations?lineage=`` and adopts it (the platform
also answers a repeated POST of a live lineage with that reservation instead of queueing again).

**Backstop.** The platform ends every reservation at ``created_at + ttl_s`` by itself.

**Connection**: host, port, schema (``http``/``https``, default ``https``); the *password* is the
bearer token (a secret: sent only in the ``Authorization`` header; never logged, in XCom, the
handle or evidence). Extras (optional): ``base_path`` (e.g. ``/api/v1``), ``timeout_s`` (10),
``retries`` (3, on connection errors and 502/503/504, with backoff), ``verify`` (TLS: true,
false or a CA bundle path), ``owner_host`` (``airflow``), ``health_command``,
``health_timeout_s`` (60), ``platform_down_timeout_s`` (300), ``poll_interval_s`` (2).

**Manual cleanup**::

    curl -H "Authorization: Bearer $TOKEN" "$API/reservations?owner=airflow/rl..."
    curl -X DELETE -H "Authorization: Bearer $TOKEN" "$API/reservations/<id>"
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel

from airflow_provider_runners.backends.bench_http.errors import BENCH_HTTP_ERRORS, PlatformUnavailable
from airflow_provider_runners.backends.shared.bench import run_bench_command, run_health_command
from airflow_provider_runners.core.backend import (
    Backend,
    CommandRequest,
    CommandResult,
    ConnectionConfig,
    ConnField,
    OutputSink,
    ProvisionRequest,
    RunnerState,
    RunnerStatus,
    TeardownResult,
)
from airflow_provider_runners.core.bench_options import BenchOptions, selector_for
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.secret_refs import LOCAL_KINDS
from airflow_provider_runners.exceptions import ConnectionConfigError, ProvisionError, RunnerCommandError

LIVE = frozenset({"queued", "preparing", "ready"})


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


class BenchHttpBackend(Backend):
    """Benches through an HTTP bench platform. Lifecycle, connection and cleanup: see the module docstring."""

    name = "bench_http"
    conn_type = "runners_bench_http"
    hook_name = "Runners: HTTP bench platform"
    hidden_fields: ClassVar[tuple[str, ...]] = ("login",)
    relabeling: ClassVar[Mapping[str, str]] = {"schema": "Scheme (http/https)", "password": "API token"}
    placeholders: ClassVar[Mapping[str, str]] = {"host": "benches.example.internal", "schema": "https"}
    conn_fields: ClassVar[Mapping[str, ConnField]] = {
        "base_path": ConnField("Base path", placeholder="/api/v1"),
        "timeout_s": ConnField("Request timeout (s)", type="number", default=10.0),
        "retries": ConnField("Retries", type="integer", default=3),
    }
    runner_classes: ClassVar[frozenset[str]] = frozenset({"bench"})
    options_model: ClassVar[type[BaseModel] | None] = BenchOptions
    error_map = BENCH_HTTP_ERRORS  # errors.py: unavailable/5xx transient, 404 gone, 401/4xx permanent
    poll_interval = 2.0
    idle_timeout_unsupported: ClassVar[str | None] = (
        "the bench platform has no idle release; it ends the reservation at its ttl"
    )
    secret_ref_kinds: ClassVar[frozenset[str]] = LOCAL_KINDS

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        extra = config.extra
        scheme = (config.schema or "https").lower()
        if scheme not in ("http", "https"):
            raise ConnectionConfigError(
                f"Connection {config.conn_id!r} schema: {scheme!r} is not http or https"
            )
        port = f":{config.port}" if config.port else ""
        self.base_url = (
            f"{scheme}://{config.host or '127.0.0.1'}{port}{str(extra.get('base_path') or '').rstrip('/')}"
        )
        self.timeout_s = float(extra.get("timeout_s", 10.0))
        self.retries = int(extra.get("retries", 3))
        self.verify: bool | str = extra.get("verify", True)
        self.owner_host = str(extra.get("owner_host") or "airflow")
        self.health_command: str | None = extra.get("health_command") or None
        self.health_timeout_s = float(extra.get("health_timeout_s", 60.0))
        self.down_timeout_s = float(extra.get("platform_down_timeout_s", 300.0))
        if extra.get("poll_interval_s"):
            setattr(self, "poll_interval", float(extra["poll_interval_s"]))  # noqa: B010 - ClassVar default
        self._token = config.password or ""
        self._session: Any = None
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._benches: list[dict[str, Any]] | None = None
        self.calls = 0

    def batch_key(self) -> str:
        return f"{self.name}:{self.base_url}"

    # -- HTTP -------------------------------------------------------------------------------------
    def _http(self) -> Any:
        with self._lock:
            if self._session is None:
                import requests
                from requests.adapters import HTTPAdapter
                from urllib3.util.retry import Retry

                retry = Retry(
                    total=self.retries,
                    backoff_factor=0.2,
                    status_forcelist=(502, 503, 504),
                    allowed_methods=frozenset({"GET", "POST", "DELETE"}),  # POST: idempotent by lineage
                    raise_on_status=False,
                )
                session = requests.Session()
                session.mount("http://", HTTPAdapter(max_retries=retry))
                session.mount("https://", HTTPAdapter(max_retries=retry))
                session.headers["Authorization"] = f"Bearer {self._token}"
                session.verify = self.verify
                self._session = session
            return self._session

    def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        import requests

        self.calls += 1
        try:
            response = self._http().request(method, self.base_url + path, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise PlatformUnavailable(f"bench platform {self.base_url}: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise PlatformUnavailable(f"bench platform {self.base_url}: HTTP {response.status_code}")
        if response.status_code == 401:
            raise ProvisionError(
                f"bench platform {self.base_url} refused the token of Connection {self.conn_id!r} (401)"
            )
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text[:300]}
        return response.status_code, body

    def owner_for(self, lineage_key: str) -> str:
        return f"{self.owner_host}/{lineage_key}"

    # -- create / find ----------------------------------------------------------------------------
    def create(self, request: ProvisionRequest) -> RunnerHandle:
        spec = request.resolved.spec
        selector = selector_for(spec.options, request.resolved.profile.options)
        body: dict[str, Any] = {
            "owner": self.owner_for(request.lineage.key),
            "lineage": request.lineage.key,
            # the platform's backstop: the request's expires_at (whole seconds, rounded up)
            "ttl_s": max(1, math.ceil((request.expires_at - datetime.now(UTC)).total_seconds())),
            "queue": selector.queue,
        }
        if selector.place:
            body["bench_id"] = selector.place
        if selector.tags:
            body["tags"] = dict(selector.tags)
        status, out = self._request("POST", "/reservations", json=body)
        if status == 404:
            raise ProvisionError(f"no bench matches filters {selector.describe()}: {out.get('message')}")
        if status == 409:
            holders = "; ".join(
                f"{h['bench_id']} held by {h['owner']} ({h['reservation']})" for h in out.get("holders", [])
            )
            raise ProvisionError(
                f"every bench matching {selector.describe()} is busy and queue is false: {holders}"
            )
        if status not in (200, 201):
            raise ProvisionError(f"bench platform refused the reservation ({status}): {out.get('message')}")
        handle = self._handle(out, request.conn_id, request, selector.health_command)
        # 201: a new reservation, ending at the request's expires_at; 200: this lineage's live one
        return handle.evolve(expires_at=request.expires_at) if status == 201 else handle

    def _handle(
        self,
        res: dict[str, Any],
        conn_id: str,
        request: ProvisionRequest | None = None,
        health: str | None = None,
    ) -> RunnerHandle:
        created = datetime.fromisoformat(res["created_at"])
        return RunnerHandle(
            backend=self.name,
            runner_class="bench",
            resource_id=f"bh-{res['lineage']}",
            conn_id=conn_id,
            lineage_key=res["lineage"],
            attempt_token=request.attempt_token if request else f"{res['lineage']}-found",
            created_at=created,
            expires_at=datetime.fromisoformat(res["expires_at"]),
            environment=request.resolved.environment if request else "unknown",
            profile=request.resolved.spec.profile if request else "unknown",
            tags=request.resource_labels() if request else {},
            pricing=request.pricing() if request else None,
            endpoints={"api": self.base_url},
            details={
                "api": self.base_url,
                "reservation": res["id"],
                "owner": res["owner"],
                "filters": " ".join(
                    [f"bench_id={res['requested_bench']}"] * bool(res.get("requested_bench"))
                    + [f"{k}={v}" for k, v in sorted(res["tags"].items())]
                ),
                "health_command": health,
                "bench": res.get("bench_id"),
            },
        )

    def find(self, lineage_key: str) -> RunnerHandle | None:
        _, out = self._request("GET", "/reservations", params={"lineage": lineage_key})
        live = [r for r in out.get("reservations", []) if r["state"] in LIVE]
        return self._handle(live[0], self.conn_id) if live else None

    # -- status -------------------------------------------------------------------------------------
    def status(self, handle: RunnerHandle) -> RunnerStatus:
        return self.status_many([handle])[handle.resource_id]

    def status_many(self, handles: Iterable[RunnerHandle]) -> dict[str, RunnerStatus]:
        handles = list(handles)
        ids = ",".join(str(h.details["reservation"]) for h in handles)
        try:
            _, out = self._request("GET", "/reservations", params={"ids": ids})
        except PlatformUnavailable as exc:
            now = time.monotonic()
            self._down_since = self._down_since or now
            down = now - self._down_since
            state = RunnerState.FAILED if down > self.down_timeout_s else RunnerState.PENDING
            return {
                h.resource_id: RunnerStatus(state, f"platform unreachable for {down:.0f}s: {exc}")
                for h in handles
            }
        self._down_since = None
        self._benches = None  # fetched at most once per tick, only if someone is queued
        by_id = {r["id"]: r for r in out.get("reservations", [])}
        return {h.resource_id: self._status_one(h, by_id.get(str(h.details["reservation"]))) for h in handles}

    def _status_one(self, handle: RunnerHandle, res: dict[str, Any] | None) -> RunnerStatus:
        rid = handle.details["reservation"]
        if res is None:
            return RunnerStatus(RunnerState.GONE, f"reservation {rid} is unknown to {self.base_url}")
        state = res["state"]
        if state in ("released", "expired"):
            return RunnerStatus(RunnerState.GONE, f"reservation {rid} is {state}: {res['message']}")
        if state == "failed":
            return RunnerStatus(RunnerState.FAILED, f"reservation {rid} failed: {res['message']}")
        if state != "ready":
            return RunnerStatus(RunnerState.PENDING, self._waiting_message(res))
        bench = str(res["bench_id"])
        checked, outcome = "platform", res["message"]
        health = handle.details.get("health_command") or self.health_command
        if health:
            ok, outcome = run_health_command(
                str(health), self.bench_env(handle, bench), self.health_timeout_s
            )
            checked = "health_command"
            if not ok:
                return RunnerStatus(
                    RunnerState.FAILED, f"bench {bench} ready but its health command failed: {outcome}"
                )
        created, allocated = _ts(res["created_at"]) or 0.0, _ts(res["allocated_at"]) or time.time()
        return RunnerStatus(
            RunnerState.READY,
            f"bench {bench} held by {res['owner']} ({outcome})",
            endpoints={"api": self.base_url, "bench": bench},
            details={
                "bench": bench,
                "bench_tags": " ".join(f"{k}={v}" for k, v in sorted((res.get("bench_tags") or {}).items())),
                "allocated_at": round(allocated, 3),
                "waited_s": round(max(0.0, allocated - created), 3),
                "readiness_checked": checked,
                "readiness_result": str(outcome)[:300],
            },
        )

    def _waiting_message(self, res: dict[str, Any]) -> str:
        """Queued: position, and who holds the matching benches (what a timeout reports)."""
        if res["state"] == "preparing":
            return f"reservation {res['id']}: bench {res['bench_id']} allocated, platform checking readiness"
        try:
            if self._benches is None:
                self._benches = self._request("GET", "/benches")[1].get("benches", [])
            wanted = res["tags"]
            busy = [
                f"{b['id']} " + (f"held by {b['owner']}" if b["owner"] else b["state"])
                for b in self._benches
                if (not res.get("requested_bench") or b["id"] == res["requested_bench"])
                and all(b["tags"].get(k) == v for k, v in wanted.items())
            ]
        except PlatformUnavailable:
            busy = ["(bench list unavailable)"]
        return f"reservation {res['id']} queued at position {res['position']}: {'; '.join(busy)}"

    # -- teardown ---------------------------------------------------------------------------------
    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        rid = handle.details.get("reservation")
        if not rid:
            found = self.find(handle.lineage_key)
            if found is None:
                return TeardownResult(existed=False, message="no reservation for this lineage")
            rid = found.details["reservation"]
        # DELETE is idempotent (200 for a reservation already released): ask first, so a second
        # teardown reports that nothing was left (docs/bench_http.openapi.yaml).
        _, listed = self._request("GET", "/reservations", params={"ids": str(rid)})
        before = next((r for r in listed.get("reservations", []) if str(r["id"]) == str(rid)), None)
        if before is None or before["state"] in ("released", "expired"):
            state = "unknown" if before is None else before["state"]
            return TeardownResult(
                existed=False,
                message=f"reservation {rid} already {state}",
                details={"reservation": rid, "final_state": state, "release_confirmed": True},
            )
        status, out = self._request("DELETE", f"/reservations/{rid}")
        if status == 404:
            return TeardownResult(
                existed=False,
                message=f"reservation {rid} already gone (404)",
                details={"release_confirmed": True},
            )
        if status != 200 or out.get("state") not in ("released", "expired", "failed"):
            raise ProvisionError(
                f"release of reservation {rid} not confirmed ({status}): {out.get('message')}"
            )
        released, allocated = _ts(out.get("released_at")), _ts(out.get("allocated_at"))
        return TeardownResult(
            existed=True,
            message=f"reservation {rid} {out['state']}",
            details={
                "reservation": rid,
                "bench": out.get("bench_id"),
                "final_state": out["state"],
                "released_at": out.get("released_at"),
                "hold_s": round(released - allocated, 3) if released and allocated else None,
                "release_confirmed": True,
            },
        )

    # -- evidence, inventory, commands ----------------------------------------------------------------
    def describe(self, handle: RunnerHandle) -> dict[str, Any]:
        d = handle.details
        return {
            "api": self.base_url,
            "bench": d.get("bench"),
            "bench_tags": d.get("bench_tags"),
            "filters": d.get("filters"),
            "reservation": d.get("reservation"),
            "held_by": d.get("owner"),
            "waited_s": d.get("waited_s"),
            "allocated_at": d.get("allocated_at"),
            "readiness": {"checked": d.get("readiness_checked"), "result": d.get("readiness_result")},
        }

    def list_managed(self) -> list[RunnerHandle]:
        _, out = self._request("GET", "/reservations")
        prefix = f"{self.owner_host}/"
        return [
            self._handle(r, self.conn_id)
            for r in out.get("reservations", [])
            if r["state"] in LIVE and r["owner"].startswith(prefix)
        ]

    def bench_env(self, handle: RunnerHandle, bench: str) -> dict[str, str]:
        """What a HIL command needs (no secrets: pass the API token as secret_env conn:<id>#password)."""
        return {
            "BENCH_ID": bench,
            "BENCH_RESERVATION": str(handle.details.get("reservation")),
            "BENCH_API": self.base_url,
        }

    def run_command(
        self, handle: RunnerHandle, request: CommandRequest, output: OutputSink, cancel: threading.Event
    ) -> CommandResult:
        rid = handle.details.get("reservation")
        status, res = self._request("GET", f"/reservations/{rid}")
        if status != 200 or res.get("state") != "ready":
            raise RunnerCommandError(
                f"reservation {rid} is not ready any more ({res.get('state', status)}: {res.get('message')}); "
                f"not running {request.name}"
            )
        result = run_bench_command(request, output, cancel, self.bench_env(handle, str(res["bench_id"])))
        return CommandResult(
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            cancelled=result.cancelled,
            details={**result.details, "bench": res["bench_id"], "reservation": rid},
        )
