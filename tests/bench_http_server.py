"""A small bench platform implementing docs/bench_http.openapi.yaml, for tests and benchmarks.

Stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (a free port), state in memory. It checks every
request body against ``ReservationRequest`` and every response it sends against the schema the
OpenAPI document gives for that path, method and status code; a response that does not conform
is recorded in ``violations`` and sent as 500, so contract drift fails the tests.

Benches: ``{"imx8-a": {"tags": {"board": "imx8"}}}``; a bench may be ``healthy: False`` (its
readiness check fails) or ``offline: True``. Allocation takes ``ready_after_s`` to become ready.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import yaml

OPENAPI = Path(__file__).resolve().parent.parent / "docs" / "bench_http.openapi.yaml"
LIVE = ("queued", "preparing", "ready")


def load_contract() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI.read_text())


def validator_for(contract: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for ``schema`` whose ``#/components/...`` references resolve in the contract."""
    return jsonschema.Draft202012Validator(
        {**contract, **schema}, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def response_schema(contract: dict[str, Any], template: str, method: str, status: int) -> dict[str, Any]:
    response = contract["paths"][template][method]["responses"][str(status)]
    if "$ref" in response:
        response = contract["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"]["application/json"]["schema"]


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


class BenchPlatform:
    """The platform's state and rules (queueing, readiness, expiry), independent of HTTP."""

    def __init__(self, benches: dict[str, dict[str, Any]], ready_after_s: float = 0.2) -> None:
        self.benches = {
            name: {"tags": {}, "healthy": True, "offline": False, **b} for name, b in benches.items()
        }
        self.ready_after_s = ready_after_s
        self.reservations: dict[str, dict[str, Any]] = {}
        self.lock = threading.RLock()
        self._ids = itertools.count(1)

    def _holder(self, bench: str) -> dict[str, Any] | None:
        return next(
            (
                r
                for r in self.reservations.values()
                if r["bench_id"] == bench and r["state"] in ("preparing", "ready")
            ),
            None,
        )

    def _matches(self, res: dict[str, Any], bench: str) -> bool:
        b = self.benches[bench]
        if res["requested_bench"] and res["requested_bench"] != bench:
            return False
        return all(b["tags"].get(k) == v for k, v in res["tags"].items())

    def tick(self) -> None:
        now = time.time()
        for res in self.reservations.values():
            if res["state"] in LIVE and now >= res["_expires"]:
                res.update(state="expired", released_at=now, message="ttl passed: released by the platform")
            elif res["state"] == "preparing" and now >= res["_ready_due"]:
                if self.benches[res["bench_id"]]["healthy"]:
                    res.update(state="ready", ready_at=now, message=f"bench {res['bench_id']} ready")
                else:
                    res.update(
                        state="failed",
                        released_at=now,
                        message=f"bench {res['bench_id']} failed its readiness check",
                    )
        for res in self.reservations.values():
            if res["state"] != "queued":
                continue
            for bench, info in self.benches.items():
                if not info["offline"] and self._holder(bench) is None and self._matches(res, bench):
                    res.update(
                        state="preparing",
                        bench_id=bench,
                        allocated_at=now,
                        _ready_due=now + self.ready_after_s,
                        message=f"bench {bench} allocated, checking readiness",
                    )
                    break
        queued = [r for r in self.reservations.values() if r["state"] == "queued"]
        for position, res in enumerate(queued, 1):
            res["position"] = position
            res["message"] = f"queued at position {position}"
        for res in self.reservations.values():
            if res["state"] != "queued":
                res["position"] = None

    def public(self, res: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in res.items() if not k.startswith("_")}
        for key in ("created_at", "allocated_at", "ready_at", "released_at"):
            out[key] = _iso(res[key])
        out["expires_at"] = _iso(res["_expires"])
        out["bench_tags"] = dict(self.benches[res["bench_id"]]["tags"]) if res["bench_id"] else None
        return out

    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.tick()
        for res in self.reservations.values():
            if res["lineage"] == body["lineage"] and res["state"] in LIVE:
                return 200, self.public(res)
        wanted = {"requested_bench": body.get("bench_id"), "tags": dict(body.get("tags") or {})}
        matching = [b for b in self.benches if self._matches(wanted, b)]
        if not matching:
            filters = " ".join(
                [f"bench_id={wanted['requested_bench']}"] * bool(wanted["requested_bench"])
                + [f"{k}={v}" for k, v in sorted(wanted["tags"].items())]
            )
            return 404, {
                "error": "no_match",
                "message": f"no bench matches {filters}; benches: {sorted(self.benches)}",
            }
        if body.get("queue") is False and all(
            self._holder(b) or self.benches[b]["offline"] for b in matching
        ):
            holders = [
                {"bench_id": b, "reservation": h["id"], "owner": h["owner"]}
                for b in matching
                if (h := self._holder(b))
            ]
            return 409, {
                "error": "conflict",
                "message": f"every matching bench is held: {sorted(matching)}",
                "holders": holders,
            }
        now = time.time()
        res = {
            "id": f"r{next(self._ids)}",
            "state": "queued",
            "bench_id": None,
            **wanted,
            "owner": body["owner"],
            "lineage": body["lineage"],
            "created_at": now,
            "allocated_at": None,
            "ready_at": None,
            "released_at": None,
            "position": None,
            "message": "queued",
            "_expires": now + body["ttl_s"],
            "_ready_due": None,
        }
        self.reservations[res["id"]] = res
        self.tick()
        return 201, self.public(res)

    def release(self, rid: str) -> tuple[int, dict[str, Any]]:
        self.tick()
        res = self.reservations.get(rid)
        if res is None:
            return 404, {"error": "not_found", "message": f"no reservation {rid}"}
        if res["state"] in LIVE:
            res.update(state="released", released_at=time.time(), message="released")
        self.tick()
        return 200, self.public(res)


class BenchHttpServer:
    """HTTP front of a :class:`BenchPlatform` on 127.0.0.1:<free port> under ``base_path``."""

    def __init__(
        self, benches: dict[str, dict[str, Any]], token: str, base_path: str = "/api/v1", **kw: Any
    ) -> None:
        self.platform = BenchPlatform(benches, **kw)
        self.token = token
        self.base_path = base_path.rstrip("/")
        self.contract = load_contract()
        self.request_validator = validator_for(
            self.contract, {"$ref": "#/components/schemas/ReservationRequest"}
        )
        self.violations: list[str] = []
        self.calls: Counter[str] = Counter()
        self.fail_next: list[int] = []  # status codes to answer the next requests with (transient errors)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> BenchHttpServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[str, int, dict[str, Any]]:
        p = self.platform
        with p.lock:
            if path == "/benches" and method == "get":
                p.tick()
                benches = []
                for name, info in sorted(p.benches.items()):
                    holder = p._holder(name)
                    state = "offline" if info["offline"] else ("reserved" if holder else "free")
                    benches.append(
                        {
                            "id": name,
                            "tags": info["tags"],
                            "state": state,
                            "reservation": holder["id"] if holder else None,
                            "owner": holder["owner"] if holder else None,
                        }
                    )
                return "/benches", 200, {"benches": benches}
            if path == "/reservations" and method == "post":
                errors = sorted(e.message for e in self.request_validator.iter_errors(body))
                if errors:
                    return "/reservations", 400, {"error": "bad_request", "message": "; ".join(errors)}
                status, out = p.create(body)
                return "/reservations", status, out
            if path == "/reservations" and method == "get":
                p.tick()
                ids = set(",".join(query.get("ids", [])).split(",")) - {""}
                found = [
                    p.public(r)
                    for r in p.reservations.values()
                    if (not ids or r["id"] in ids)
                    and all(r[k] == query[k][0] for k in ("lineage", "owner") if k in query)
                ]
                return "/reservations", 200, {"reservations": found}
            if path.startswith("/reservations/"):
                rid = path.split("/", 2)[2]
                if method == "delete":
                    status, out = p.release(rid)
                    return "/reservations/{id}", status, out
                if method == "get":
                    p.tick()
                    res = p.reservations.get(rid)
                    if res is None:
                        return (
                            "/reservations/{id}",
                            404,
                            {"error": "not_found", "message": f"no reservation {rid}"},
                        )
                    return "/reservations/{id}", 200, p.public(res)
        return "", 404, {"error": "not_found", "message": f"no route {method.upper()} {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                path = url.path
                server.calls[
                    f"{method.upper()} {path.split('/r')[0] if '/reservations/' in path else path}"
                ] += 1
                if server.fail_next:
                    self._send(server.fail_next.pop(0), {"error": "bad_request", "message": "transient"})
                    return
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    self._send(401, {"error": "unauthorized", "message": "missing or wrong bearer token"})
                    return
                if not path.startswith(server.base_path + "/"):
                    self._send(404, {"error": "not_found", "message": f"no route {path}"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length)) if length else None
                except json.JSONDecodeError:
                    self._send(400, {"error": "bad_request", "message": "body is not JSON"})
                    return
                template, status, out = server._route(
                    method, path[len(server.base_path) :], parse_qs(url.query), body
                )
                if template:
                    schema = response_schema(server.contract, template, method, status)
                    errors = [e.message for e in validator_for(server.contract, schema).iter_errors(out)]
                    if errors:
                        server.violations.append(f"{method.upper()} {template} {status}: {errors}")
                        status, out = 500, {"error": "bad_request", "message": "contract violation"}
                self._send(status, out)

            def _send(self, status: int, out: dict[str, Any]) -> None:
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("get")

            def do_POST(self) -> None:
                self._serve("post")

            def do_DELETE(self) -> None:
                self._serve("delete")

        return Handler
