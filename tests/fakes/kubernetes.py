"""A Kubernetes API server and a kubelet for tests: kmock's KubernetesEmulator over HTTP, taught the real API.

:class:`ApiServer` is kmock's ``KubernetesEmulator`` (an in-memory object store over HTTP) with
what the real API server does and the emulator does not:

- ``409 AlreadyExists`` / ``404 NotFound`` as real ``Status`` objects (reason, message, details);
- ``uid``, ``creationTimestamp``, ``resourceVersion`` and ``status.phase: Pending`` on create, a
  new ``resourceVersion`` on every change;
- ``labelSelector`` / ``fieldSelector`` on LIST and WATCH, ``resourceVersion`` on WATCH (the
  objects as they were then are not sent again), ``timeoutSeconds`` on WATCH (the
  server ends the stream, as the real one does), and ``watch=True`` as well as ``watch=true``
  (the API server parses booleans with Go's ``strconv.ParseBool``; ``kubernetes_asyncio`` sends
  ``True``);
- graceful pod deletion: a bound, running pod gets ``deletionTimestamp`` and stays until its
  kubelet has stopped it and deletes it with ``gracePeriodSeconds=0``;
- the ``log`` subresource (``follow=true`` streams) and the ``exec`` websocket (v4 channels),
  served from the kubelet.

:class:`Kubelet` is a thread that polls pods through the real ``kubernetes`` client and drives
them like a node would: binds them, **really runs the main container's command as a local
process** (mount paths such as ``/workspace`` mapped to a temp dir per pod, secretKeyRefs read
from Secrets in the API), reports Running / Succeeded / Failed with exit codes, an image digest
and a node name, enforces ``activeDeadlineSeconds``, stops the process on deletion and removes the
workspace. ``script`` makes pods fail the way real ones do: ``crashloop``, ``imagepull``,
``unschedulable``, ``pending``.

:class:`KubeCluster` runs both on 127.0.0.1 on a free port, and stops them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Self

import aiohttp.web
import kmock
from kmock._internal import enums

from tests.fakes.kubelet import KUBELET_AGENT, Kubelet, PodLog, now_iso  # noqa: F401 - re-exported

logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _status(
    code: int, reason: str, message: str, kind: str | None = None, name: str | None = None
) -> Exception:
    details = {"name": name, "kind": kind} if name else {}
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details)


def _expired(version: str) -> dict[str, Any]:
    """The ``Status`` of a watch from a version the server no longer holds (HTTP 200, then this)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"too old resource version: {version} ({time.time_ns()})",
        "reason": "Expired",
        "code": 410,
    }


def _get_path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def match_labels(labels: dict[str, str], selector: str) -> bool:
    """Equality/existence label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def match_fields(obj: dict[str, Any], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, _, value = term.replace("==", "=").partition("=")
        if str(_get_path(obj, key) or "") != value:
            return False
    return True


class ApiServer(kmock.KubernetesEmulator):  # type: ignore[misc]
    """The emulator, answering as the real API server does (see the module docstring)."""

    kubelet: Kubelet | None = None
    #: Keep every request in the log (tests count them there). kmock matches each new request
    #: against the whole log, so a server answering many thousands of requests
    #: (``benchmarks/k8s_api_calls.py``) turns this off: a request leaves the log once it has
    #: been dispatched, and its answer (a watch stream too) goes on.
    log_requests: bool = True
    #: Answer watches ``403 Forbidden``, as a cluster whose RBAC lacks the ``watch`` verb does.
    refuse_watch: bool = False
    #: Watches from a resourceVersion older than this one end at once with a ``410 Expired``
    #: ``ERROR`` event, as the real API server answers a version its watch cache no longer holds.
    expire_versions_before: int | None = None
    #: Called with every request before it is answered (a benchmark counts them here).
    on_request: Callable[[Any], None] | None = None

    def _key(self, request: Any) -> tuple[Any, str | None, str | None]:
        return (request.resource, request.namespace, request.name)

    def _live(self, key: Any) -> Any:
        return self._objects[key] if key in self._objects and not self._objects[key].deleted else None

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        if self.on_request is not None:
            self.on_request(request)
        try:
            return await self._dispatch(request)
        finally:
            self._forget(request)

    def _forget(self, request: Any) -> None:
        if self.log_requests:
            return
        log = self._requests
        for i in range(len(log) - 1, -1, -1):  # it is one of the newest
            if log[i] is request:
                del log[i]
                return

    async def _dispatch(self, request: Any) -> aiohttp.web.StreamResponse:
        res = request.resource
        if self.refuse_watch and request.action == enums.action.WATCH and res is not None:
            raise _status(
                403,
                "Forbidden",
                f'{res.plural} is forbidden: User "runner" cannot watch resource "{res.plural}"',
            )
        if res is not None and request.subresource not in ("log", "exec"):
            plural = res.plural
            if request.action == enums.action.CREATE and isinstance(request.data, dict):
                meta = request.data.setdefault("metadata", {})
                name = meta.get("name")
                ns = request.namespace or meta.get("namespace")
                if self._live((res, ns, name)) is not None:
                    raise _status(409, "AlreadyExists", f'{plural} "{name}" already exists', plural, name)
                meta.update(
                    uid=str(uuid.uuid4()), creationTimestamp=now_iso(), resourceVersion=str(time.time_ns())
                )
                meta["namespace"] = ns
                if plural == "pods":
                    request.data["status"] = {"phase": "Pending", "qosClass": "Guaranteed"}
            elif request.name is not None and request.action in (
                enums.action.FETCH,
                enums.action.UPDATE,
                enums.action.DELETE,
            ):
                obj = self._live(self._key(request))
                if obj is None:
                    raise _status(
                        404, "NotFound", f'{plural} "{request.name}" not found', plural, request.name
                    )
                if request.action == enums.action.DELETE and plural == "pods":
                    graceful = await self._graceful_delete(request, obj)
                    if graceful is not None:
                        return graceful
                if request.action == enums.action.UPDATE and isinstance(request.data, dict):
                    request.data.setdefault("metadata", {})["resourceVersion"] = str(time.time_ns())
        return await super()._handle(request)

    async def _graceful_delete(self, request: Any, obj: Any) -> aiohttp.web.StreamResponse | None:
        """A bound, non-terminal pod is marked for deletion; its kubelet deletes it when stopped."""
        grace = request.params.get("gracePeriodSeconds")
        if grace is None and isinstance(request.data, dict):
            grace = request.data.get("gracePeriodSeconds")
        raw = obj.raw
        phase = raw.get("status", {}).get("phase")
        if str(grace) == "0" or not raw.get("spec", {}).get("nodeName") or phase in ("Succeeded", "Failed"):
            return None
        if not raw["metadata"].get("deletionTimestamp"):
            seconds = (
                int(grace) if grace is not None else raw["spec"].get("terminationGracePeriodSeconds", 30)
            )
            obj.patch(
                {
                    "metadata": {
                        "deletionTimestamp": now_iso(),
                        "deletionGracePeriodSeconds": seconds,
                        "resourceVersion": str(time.time_ns()),
                    }
                }
            )
            await self._buses[request.resource].put({"type": "MODIFIED", "object": obj.raw})
        return aiohttp.web.json_response(obj.raw)

    async def _serve_list(self, request: Any) -> Any:
        result = await super()._serve_list(request)
        labels = request.params.get("labelSelector")
        fields = request.params.get("fieldSelector")
        items = result["items"]
        if labels:
            items = [o for o in items if match_labels(o.get("metadata", {}).get("labels") or {}, labels)]
        if fields:
            items = [o for o in items if match_fields(o, fields)]
        return {
            "kind": "List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(time.time_ns())},
            "items": items,
        }

    async def _serve_watch(self, request: Any) -> Any:
        labels = request.params.get("labelSelector")
        fields = request.params.get("fieldSelector")
        timeout = request.params.get("timeoutSeconds")
        since = request.params.get("resourceVersion")
        since_ns = int(since) if since and since.isdigit() and since != "0" else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(timeout) if timeout else None
        if since_ns is not None and self.expire_versions_before and since_ns < self.expire_versions_before:
            self._forget(request)
            yield b""  # the headers first, as kmock's own watch does
            yield {"type": "ERROR", "object": _expired(since)}
            return
        stream = super()._serve_watch(request)
        self._forget(request)  # dispatched: streaming may last long
        try:
            while True:
                try:
                    if deadline is None:
                        item = await anext(stream)
                    else:
                        item = await asyncio.wait_for(anext(stream), max(0.0, deadline - loop.time()))
                except (StopAsyncIteration, TimeoutError):
                    return
                obj = item.get("object") if isinstance(item, dict) else None
                if isinstance(obj, dict):
                    if labels and not match_labels(obj.get("metadata", {}).get("labels") or {}, labels):
                        continue
                    if fields and not match_fields(obj, fields):
                        continue
                    version = str(obj.get("metadata", {}).get("resourceVersion") or "")
                    started_before = version.isdigit() and since_ns is not None and int(version) <= since_ns
                    if item.get("type") == "ADDED" and started_before:  # a watch from a version
                        continue  # starts after it
                yield item
        finally:
            await stream.aclose()

    def pod(self, ns: str, name: str) -> dict[str, Any] | None:
        for (res, namespace, obj_name), obj in self._objects.items():
            if res.plural == "pods" and namespace == ns and obj_name == name and not obj.deleted:
                return dict(obj.raw)
        return None

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw.method == "GET" and raw.query.get("watch") in ("1", "t", "T", "TRUE", "True"):
            raw = raw.clone(rel_url=raw.rel_url.update_query(watch="true"))
        parts = raw.path.strip("/").split("/")
        if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            if parts[6] == "log":
                self._requests.append(await kmock.Request._parse(raw, id=len(self._requests)))
                return await self._serve_log(raw, parts[3], parts[5])
            if parts[6] == "exec":
                self._requests.append(await kmock.Request._parse(raw, id=len(self._requests)))
                return await self._serve_exec(raw, parts[3], parts[5])
        return await super().__call__(raw)

    def _error(self, code: int, reason: str, message: str) -> aiohttp.web.Response:
        body = {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
        }
        return aiohttp.web.json_response(body, status=code)

    async def _serve_log(
        self, raw: aiohttp.web.BaseRequest, ns: str, name: str
    ) -> aiohttp.web.StreamResponse:
        pod = self.pod(ns, name)
        if pod is None:
            return self._error(404, "NotFound", f'pods "{name}" not found')
        log = self.kubelet.log_of(pod["metadata"]["uid"]) if self.kubelet else None
        if log is None:
            return self._error(
                400, "BadRequest", f'container "main" in pod "{name}" is waiting to start: ContainerCreating'
            )
        if raw.query.get("follow") != "true":
            return aiohttp.web.Response(body=b"".join(log.lines), content_type="text/plain")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(raw)
        sent = 0
        while True:
            done = log.done
            lines = log.lines[sent:]
            for line in lines:
                await response.write(line)
            sent += len(lines)
            if done and sent == len(log.lines):
                break
            await asyncio.sleep(0.05)
        await response.write_eof()
        return response

    async def _serve_exec(
        self, raw: aiohttp.web.BaseRequest, ns: str, name: str
    ) -> aiohttp.web.StreamResponse:
        pod = self.pod(ns, name)
        if pod is None:
            return self._error(404, "NotFound", f'pods "{name}" not found')
        target = self.kubelet.exec_target(pod, raw.query.getall("command")) if self.kubelet else None
        if target is None:
            return self._error(400, "BadRequest", f'pod "{name}" is not running')
        argv, env, cwd = target
        ws = aiohttp.web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await ws.prepare(raw)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )

        async def pump(stream: asyncio.StreamReader, channel: int) -> None:
            while chunk := await stream.read(4096):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_bytes(bytes([channel]) + chunk)

        async def receive() -> None:  # answers the client's close handshake
            async for _ in ws:
                pass

        receiver = asyncio.create_task(receive())
        try:
            await asyncio.gather(pump(proc.stdout, 1), pump(proc.stderr, 2))  # type: ignore[arg-type]
            code = await proc.wait()
        finally:  # also when aiohttp cancels the handler because the client went away
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc._transport.close()  # type: ignore[attr-defined]  # else closed by GC after the loop ends
            receiver.cancel()
        status: dict[str, Any] = {"metadata": {}, "status": "Success"}
        if code != 0:
            status = {
                "metadata": {},
                "status": "Failure",
                "reason": "NonZeroExitCode",
                "message": f"command terminated with non-zero exit code: {code}",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_bytes(b"\x03" + json.dumps(status).encode())
        await ws.close()
        receiver.cancel()
        return ws

    def requests_by(self, agent_prefix: str) -> list[Any]:
        return [r for r in self._requests if r.headers.get("User-Agent", "").startswith(agent_prefix)]


class KubeCluster:
    """ApiServer + Kubelet on 127.0.0.1, a free port; ``with KubeCluster() as cluster: cluster.url``."""

    def __init__(self, kubelet: bool = True) -> None:
        self.server = ApiServer()
        for plural, kind in (("pods", "Pod"), ("events", "Event"), ("secrets", "Secret")):
            self.server.resources[f"v1/{plural}"] = kmock.ResourceInfo(kind=kind, namespaced=True)
        self.url = ""
        self._with_kubelet = kubelet
        self.kubelet: Kubelet | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        ready = threading.Event()

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            async with self.server, kmock.Server(self.server) as srv:
                self.url = str(srv.url).rstrip("/")
                ready.set()
                await self._stopped.wait()
            gc.collect()  # close finished exec subprocess transports while the loop still runs

        self._thread = threading.Thread(
            target=lambda: asyncio.run(serve()), name="kube-apiserver", daemon=True
        )
        self._thread.start()
        if not ready.wait(15):
            raise RuntimeError("the test Kubernetes API server did not start")
        if self._with_kubelet:
            self.kubelet = Kubelet(self.url)
            self.server.kubelet = self.kubelet
            self.kubelet.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kubelet is not None:
            self.kubelet.stop()
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            o.raw
            for (res, ns, _), o in list(self.server.objects.items())
            if res.plural == "pods" and not o.deleted and (namespace is None or ns == namespace)
        ]

    def add_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        api = client.CoreV1Api(client.ApiClient(cfg))
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        api.create_namespaced_secret(namespace, {"metadata": {"name": name}, "data": encoded})

    def wait(self, predicate: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return bool(predicate())


@contextlib.contextmanager
def kube_cluster() -> Iterator[KubeCluster]:
    with KubeCluster() as cluster:
        yield cluster
