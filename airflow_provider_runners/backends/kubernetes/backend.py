"""``kubernetes``: an ephemeral pod per execution on any Kubernetes cluster, EKS included (conn type ``runners_kubernetes``).

Provision creates one pod per task instance from a pod template plus the spec (image by digest,
command, catalog resources, node selector / tolerations, service account, an ``emptyDir``
workspace; see :mod:`._k8s_pod`), named ``rp-<lineage key>``: the same name on every try, so a
retry that meets ``409 AlreadyExists`` adopts the pod when it is healthy. Readiness is
``Running`` (or, for a pod that runs its own command, already finished), read by one LIST per
namespace for every waiting pod and, between two LISTs, one WATCH that ends at the first change
(:mod:`.watch`). ``CrashLoopBackOff``,
``ImagePullBackOff``, ``ErrImagePull``, ``CreateContainerConfigError`` and ``Unschedulable``
that last longer than ``failure_grace_s`` make the runner FAILED, with the reason and the pod's
events in the message; the provision task then deletes the pod and its retries recreate it (the
retry budget is the provision task's ``retries``).

Work (:class:`~airflow_provider_runners.operators.command.RunnerCommandOperator`):
``command=POD_COMMAND`` follows the pod's own command to completion (logs streamed into the
task log, the container's exit code decides the task state); any other command is exec'd into a
``workspace`` pod.

**Resources created**: one pod in ``namespace`` (labels managed-by, runner-lineage, dag-id,
task-id, tenant, pipeline, profile, expires-at, runner-env; ``activeDeadlineSeconds`` = ttl:
the backstop) and its ``emptyDir`` workspace, which Kubernetes removes with the pod.

**Connection extras**: ``namespace`` (default ``default``), auth (``kubeconfig`` [+ ``context``],
``in_cluster``, ``eks_cluster_name`` + ``region_name`` + ``aws_conn_id``, or the Connection's
host + password as bearer token; see :mod:`._k8s_client`), ``qps``/``burst`` (5/10),
``pod_template_file``, ``service_account``, ``image_registry``, ``tag_node_selector``,
``grace_period_s`` (30), ``failure_grace_s`` (60), ``teardown_timeout_s`` (300), ``verify_ssl``.

**Manual cleanup**::

    kubectl get pods -A -l managed-by=airflow-provider-runners -L runner-lineage,expires-at
    kubectl delete pods -n NAMESPACE -l managed-by=airflow-provider-runners,runner-lineage=LINEAGE
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from airflow_provider_runners.backends.kubernetes import pod as podlib
from airflow_provider_runners.backends.kubernetes.client import (
    DEFAULT_BURST,
    DEFAULT_QPS,
    ClusterAuth,
    ClusterProbe,
    api_client,
)
from airflow_provider_runners.backends.kubernetes.errors import KUBERNETES_ERRORS
from airflow_provider_runners.backends.kubernetes.exec import exec_command
from airflow_provider_runners.backends.kubernetes.options import CONN_FIELDS, PLACEHOLDERS, KubernetesOptions
from airflow_provider_runners.backends.kubernetes.watch import PodWatch, watch_timeouts
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
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY
from airflow_provider_runners.exceptions import ProvisionError, RunnerCommandError, RunnerSpecError

if TYPE_CHECKING:
    from airflow_provider_runners.core.catalog import ResolvedSpec
    from airflow_provider_runners.core.specs import RunnerSpec

log = logging.getLogger(__name__)

#: ``RunnerCommandOperator(command=POD_COMMAND)``: follow the pod's own command to completion.
POD_COMMAND = "@pod"
MANAGED = f"managed-by={MANAGED_BY}"


def validate_spec(
    spec: RunnerSpec | Mapping[str, Any],
    pod_template_file: str | None = None,
    catalog_path: str | None = None,
) -> RunnerSpec:
    """Parse-time check of a spec for ``kubernetes``: profile, image, options and the pod template.

    DAG files call it next to ``runner(...)``: a bad template or option is a DAG import error
    naming the field and value, and nothing is created. Imports nothing from ``kubernetes``.
    """
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.specs import RunnerSpec

    parsed = RunnerSpec.parse(spec)
    podlib.check_options(
        parsed, resolve_spec(parsed, backend="kubernetes", catalog_path=catalog_path), pod_template_file
    )
    return parsed


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class KubernetesBackend(ClusterProbe, Backend):
    """A pod per execution. Resources, extras and cleanup: see the module docstring."""

    name = "kubernetes"
    conn_type = "runners_kubernetes"
    hook_name = "Runners: Kubernetes pod"
    hidden_fields: ClassVar[tuple[str, ...]] = ("port", "login", "schema")
    relabeling: ClassVar[Mapping[str, str]] = {
        "host": "API server URL (optional)",
        "password": "Bearer token (optional)",
    }
    placeholders: ClassVar[Mapping[str, str]] = PLACEHOLDERS
    conn_fields: ClassVar[Mapping[str, ConnField]] = CONN_FIELDS
    runner_classes: ClassVar[frozenset[str]] = frozenset({"pod"})
    options_model: ClassVar[type[BaseModel] | None] = KubernetesOptions
    error_map = KUBERNETES_ERRORS  # errors.py: 409/429/5xx/no answer transient, 404 gone, 4xx permanent

    @classmethod
    def check_spec(cls, resolved: ResolvedSpec) -> None:
        """The options model, then the pod built from them (as :func:`validate_spec`, no pod template)."""
        super().check_spec(resolved)
        podlib.check_options(resolved.spec, resolved, None)

    poll_interval = 5.0
    idle_timeout_unsupported = "a pod has no idle signal; activeDeadlineSeconds (the ttl) ends it"
    secret_ref_kinds: ClassVar[frozenset[str]] = frozenset({"k8s-secret"})
    #: Seconds between reads while waiting for a deleted pod to go, and while following a command.
    teardown_poll_s: ClassVar[float] = 1.0
    command_poll_s: ClassVar[float] = 2.0

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        extra = config.extra
        self.auth = ClusterAuth.from_config(config)
        self.namespace: str = extra.get("namespace") or "default"
        self.qps = float(extra.get("qps") or DEFAULT_QPS)
        self.burst = int(extra.get("burst") or DEFAULT_BURST)
        self.pod_template_file: str | None = extra.get("pod_template_file") or None
        self.service_account: str | None = extra.get("service_account") or None
        self.image_registry: str = (extra.get("image_registry") or "").rstrip("/")
        self.tag_node_selector: dict[str, str] = dict(extra.get("tag_node_selector") or {})
        self.grace_period_s = int(extra.get("grace_period_s", 30))
        self.failure_grace_s = float(extra.get("failure_grace_s", 60))
        self.teardown_timeout_s = float(extra.get("teardown_timeout_s", 300))
        self._api: Any = None
        self.bucket: Any = None
        self._watch = PodWatch()

    # -- plumbing ------------------------------------------------------------------------------
    def api(self) -> Any:
        """A CoreV1Api over the cluster's rate-limited client (built once per backend)."""
        if self._api is None:
            api, self.bucket = api_client(self.auth, self.qps, self.burst)  # MissingExtraError first
            from kubernetes import client

            self._api = client.CoreV1Api(api)
        return self._api

    @staticmethod
    def _api_exception() -> type[Exception]:
        from kubernetes.client.rest import ApiException

        return ApiException

    def _call(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Call a CoreV1Api method and return the JSON body as a dict (no model deserialisation)."""
        response = getattr(self.api(), method)(*args, _preload_content=False, **kwargs)
        return json.loads(response.data) if response.data else {}

    def _get(self, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return self._call("read_namespaced_pod", name, namespace)
        except self._api_exception() as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise

    def batch_key(self) -> str:
        return f"{self.name}:{self.auth.cluster_key}:{self.namespace}"

    def _image(self, request: ProvisionRequest) -> str | None:
        resolved = request.resolved
        if resolved.image is None:
            return None
        repo = resolved.image.uri or resolved.image.options.get("repository") or resolved.image_name
        if self.image_registry and "/" not in str(repo):
            repo = f"{self.image_registry}/{repo}"
        return f"{repo}@{resolved.image.digest}"

    # -- create / find -------------------------------------------------------------------------
    def pod_body(self, request: ProvisionRequest) -> dict[str, Any]:
        """The pod ``create`` sends for ``request`` (template, spec, labels); builds it, sends nothing."""
        return podlib.build_pod(
            request,
            podlib.check_options(request.spec, request.resolved, self.pod_template_file),
            name=podlib.pod_name(request.lineage.key),
            namespace=self.namespace,
            image=self._image(request),
            labels=request.resource_labels(),
            service_account=self.service_account,
            tag_node_selector=self.tag_node_selector,
            grace_period_s=self.grace_period_s,
        )

    def create(self, request: ProvisionRequest) -> RunnerHandle:
        body = self.pod_body(request)
        name = body["metadata"]["name"]
        for _ in range(2):
            try:
                pod = self._call("create_namespaced_pod", self.namespace, body)
                created = self._handle(pod, request.conn_id, acquisition_note="created")
                return created.evolve(expires_at=request.expires_at, pricing=request.pricing())
            except self._api_exception() as exc:
                if getattr(exc, "status", None) != 409:
                    raise ProvisionError(
                        f"pod {self.namespace}/{name}: create failed: {_reason(exc)}"
                    ) from None
            existing = self._get(name, self.namespace)
            if existing is None:
                continue  # gone between the 409 and the read: create again
            if existing["metadata"].get("labels", {}).get("runner-lineage") != request.lineage.key:
                raise ProvisionError(
                    f"pod {self.namespace}/{name} exists and is not this task's (no matching lineage)"
                )
            state = self._status_of(existing)
            if existing["metadata"].get("deletionTimestamp") is None and state.is_healthy:
                log.info("pod %s already exists (409) and is %s: adopting it", name, state.message)
                adopted = self._handle(existing, request.conn_id, acquisition_note="adopted on 409")
                return adopted.evolve(pricing=request.pricing())
            log.warning("pod %s already exists and is %s: replacing it", name, state.message)
            self._delete_and_wait(name, self.namespace, existing["metadata"].get("uid"))
        raise ProvisionError(f"pod {self.namespace}/{name} could not be created (kept conflicting)")

    def _handle(self, pod: Mapping[str, Any], conn_id: str, acquisition_note: str = "") -> RunnerHandle:
        meta = pod["metadata"]
        labels = dict(meta.get("labels") or {})
        notes = meta.get("annotations") or {}
        created = _ts(meta.get("creationTimestamp")) or datetime.now(UTC)
        expires = labels.get("expires-at")
        deadline = pod.get("spec", {}).get("activeDeadlineSeconds") or 7200
        details: dict[str, Any] = {
            "namespace": meta.get("namespace") or self.namespace,
            "cluster": self.auth.cluster_name,
            "pod_uid": meta.get("uid"),
            "mode": notes.get(f"{podlib.ANNOTATION}/mode", "command"),
        }
        if acquisition_note:
            details["create"] = acquisition_note
        return RunnerHandle(
            backend=self.name,
            runner_class="pod",
            resource_id=meta["name"],
            conn_id=conn_id,
            lineage_key=labels.get("runner-lineage", ""),
            attempt_token=notes.get(f"{podlib.ANNOTATION}/attempt-token", ""),
            created_at=created,
            expires_at=datetime.fromtimestamp(int(expires), UTC)
            if expires
            else datetime.fromtimestamp(created.timestamp() + deadline, UTC),
            environment=labels.get("runner-env", "unknown"),
            profile=labels.get("profile", "unknown"),
            tags=labels,
            details=details,
        )

    def find(self, lineage_key: str) -> RunnerHandle | None:
        found = self._call(
            "list_namespaced_pod", self.namespace, label_selector=f"{MANAGED},runner-lineage={lineage_key}"
        )
        live = [p for p in found.get("items", []) if not p["metadata"].get("deletionTimestamp")]
        if not live:
            return None
        conn_id = (
            live[-1]["metadata"].get("annotations", {}).get(f"{podlib.ANNOTATION}/conn-id", self.conn_id)
        )
        return self._handle(live[-1], conn_id)

    # -- status --------------------------------------------------------------------------------
    def _status_of(self, pod: Mapping[str, Any], with_events: bool = True) -> RunnerStatus:
        meta, status = pod["metadata"], pod.get("status", {})
        phase = status.get("phase", "Pending")
        mode = (meta.get("annotations") or {}).get(f"{podlib.ANNOTATION}/mode", "command")
        main = podlib.main_status(pod)
        node = pod.get("spec", {}).get("nodeName")
        details = {"pod_uid": meta.get("uid"), "node": node, "pod_ip": status.get("podIP")}
        if meta.get("deletionTimestamp"):
            return RunnerStatus(RunnerState.GONE, f"pod {meta['name']} is being deleted")
        if phase in ("Succeeded", "Failed"):
            code = ((main.get("state") or {}).get("terminated") or {}).get("exitCode")
            why = status.get("reason") or ""
            message = f"{phase} (exit code {code}{', ' + why if why else ''})"
            if mode == "command" and code is not None:
                return RunnerStatus(RunnerState.READY, f"command finished: {message}", details=details)
            return RunnerStatus(RunnerState.FAILED, message + self._events_text(pod, with_events))
        bad = podlib.bad_reason(pod)
        if bad:
            age = (
                datetime.now(UTC) - (_ts(meta.get("creationTimestamp")) or datetime.now(UTC))
            ).total_seconds()
            if age >= self.failure_grace_s:
                return RunnerStatus(
                    RunnerState.FAILED, f"{bad} (for {age:.0f}s)" + self._events_text(pod, with_events)
                )
            return RunnerStatus(RunnerState.PENDING, f"{phase}: {bad} (grace {self.failure_grace_s:.0f}s)")
        if phase == "Running" and (main.get("state") or {}).get("running") is not None:
            return RunnerStatus(
                RunnerState.READY,
                f"Running on {node}",
                endpoints={"pod": f"{meta.get('namespace')}/{meta['name']}"},
                details=details,
            )
        waiting = ((main.get("state") or {}).get("waiting") or {}).get("reason")
        return RunnerStatus(RunnerState.PENDING, f"{phase}{f' ({waiting})' if waiting else ''}")

    def _events_text(self, pod: Mapping[str, Any], enabled: bool) -> str:
        """The pod's latest events, for failure messages (one LIST, only when something failed)."""
        if not enabled:
            return ""
        meta = pod["metadata"]
        try:
            events = self._call(
                "list_namespaced_event",
                meta.get("namespace") or self.namespace,
                field_selector=f"involvedObject.name={meta['name']}",
            ).get("items", [])
        except Exception as exc:  # noqa: BLE001 - the failure is reported either way
            return f"; events unavailable: {exc}"
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        lines = [f"{e.get('type', '')} {e.get('reason', '')}: {e.get('message', '')}" for e in events[-5:]]
        return "; events: " + (" | ".join(lines) if lines else "none")

    def status(self, handle: RunnerHandle) -> RunnerStatus:
        pod = self._get(handle.resource_id, str(handle.details.get("namespace") or self.namespace))
        if pod is None:
            return RunnerStatus(RunnerState.GONE, "pod not found")
        self._watch.saw({handle.resource_id: pod}, replace=False)
        return self._status_of(pod)

    def status_many(self, handles: Iterable[RunnerHandle]) -> dict[str, RunnerStatus]:
        """One LIST of managed pods per namespace for every waiting handle (label selector)."""
        by_ns: dict[str, list[RunnerHandle]] = {}
        for h in handles:
            by_ns.setdefault(str(h.details.get("namespace") or self.namespace), []).append(h)
        out: dict[str, RunnerStatus] = {}
        for ns, group in by_ns.items():
            listed = self._call("list_namespaced_pod", ns, label_selector=MANAGED)
            pods = {p["metadata"]["name"]: p for p in listed.get("items", [])}
            version = (listed.get("metadata") or {}).get("resourceVersion")
            self._watch.saw(pods, replace=len(by_ns) == 1, list_version=version)
            for h in group:
                pod = pods.get(h.resource_id)
                out[h.resource_id] = self._status_of(pod) if pod is not None else self.status(h)
        return out

    def wait_for_change(self, handles: Iterable[RunnerHandle], timeout: float) -> bool:
        """The pause between two polls, spent in one WATCH of the managed pods (:mod:`.watch`)."""
        handles = list(handles)
        namespaces = {str(h.details.get("namespace") or self.namespace) for h in handles}
        if len(namespaces) != 1:  # one watch per pause; pods of several namespaces: sleep
            time.sleep(timeout)
            return False
        (ns,) = namespaces

        def open_stream(seconds: float, since: str | None) -> Any:
            kwargs = watch_timeouts(seconds)
            if since:
                kwargs["resource_version"] = since
            return self.api().list_namespaced_pod(
                ns, label_selector=MANAGED, watch=True, _preload_content=False, **kwargs
            )

        def refused(exc: Exception) -> bool:
            return isinstance(exc, self._api_exception()) and getattr(exc, "status", None) == 403

        return self._watch.wait(open_stream, [h.resource_id for h in handles], timeout, refused)

    # -- teardown ------------------------------------------------------------------------------
    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        ns = str(handle.details.get("namespace") or self.namespace)
        pod = self._get(handle.resource_id, ns)
        if pod is None:
            return TeardownResult(existed=False, message="already gone (NotFound)")
        facts = podlib.final_facts(pod)
        started = time.monotonic()
        polls = self._delete_and_wait(handle.resource_id, ns, pod["metadata"].get("uid"))
        return TeardownResult(
            existed=True,
            message=f"deleted (was {facts['phase']})",
            details={**facts, "deleted_in_s": round(time.monotonic() - started, 3), "delete_polls": polls},
        )

    def _delete_and_wait(self, name: str, ns: str, uid: str | None, grace: int | None = None) -> int:
        """Delete with a grace period and wait until the pod (this uid) is gone; 404 is success."""
        try:
            self._call(
                "delete_namespaced_pod",
                name,
                ns,
                grace_period_seconds=self.grace_period_s if grace is None else grace,
            )
        except self._api_exception() as exc:
            if getattr(exc, "status", None) == 404:
                return 0
            raise
        started, polls = time.monotonic(), 0
        while True:
            polls += 1
            pod = self._get(name, ns)
            if pod is None or (uid and pod["metadata"].get("uid") != uid):
                return polls
            if time.monotonic() - started > self.teardown_timeout_s:
                raise ProvisionError(
                    f"pod {ns}/{name} still exists {self.teardown_timeout_s:.0f}s after delete; "
                    "its activeDeadlineSeconds backstop stops it; delete it with kubectl"
                )
            time.sleep(self.teardown_poll_s)

    # -- evidence ------------------------------------------------------------------------------
    def describe(self, handle: RunnerHandle) -> dict[str, Any]:
        ns = str(handle.details.get("namespace") or self.namespace)
        pod = self._get(handle.resource_id, ns)
        if pod is None:
            return {"pod": handle.resource_id, "namespace": ns, "state": "NOT_FOUND"}
        meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
        main = podlib.main_container(pod)
        conditions = {c.get("type"): c.get("lastTransitionTime") for c in status.get("conditions") or []}
        return {
            "pod": meta["name"],
            "pod_uid": meta.get("uid"),
            "namespace": ns,
            "cluster": self.auth.cluster_name,
            "auth": self.auth.mode,
            "node": spec.get("nodeName"),
            "service_account": spec.get("serviceAccountName") or "default",
            "image": main.get("image"),
            "image_digests": {
                cs.get("name"): (cs.get("imageID") or "").rpartition("@")[2] or None
                for cs in status.get("containerStatuses") or []
            },
            "mode": (meta.get("annotations") or {}).get(f"{podlib.ANNOTATION}/mode"),
            "resources": main.get("resources"),
            "node_selector": spec.get("nodeSelector"),
            "active_deadline_s": spec.get("activeDeadlineSeconds"),
            "labels": meta.get("labels"),
            "timings": {
                "created": meta.get("creationTimestamp"),
                "scheduled": conditions.get("PodScheduled"),
                "started": status.get("startTime"),
                "ready": conditions.get("Ready"),
            },
            **podlib.final_facts(pod),
        }

    def list_managed(self) -> list[RunnerHandle]:
        items = self._call("list_namespaced_pod", self.namespace, label_selector=MANAGED).get("items", [])
        return [self._handle(p, self.conn_id) for p in items if not p["metadata"].get("deletionTimestamp")]

    # -- commands ------------------------------------------------------------------------------
    def run_command(
        self, handle: RunnerHandle, request: CommandRequest, output: OutputSink, cancel: threading.Event
    ) -> CommandResult:
        ns = str(handle.details.get("namespace") or self.namespace)
        if request.command == POD_COMMAND:
            if request.env or request.secret_env or request.workdir:
                raise RunnerSpecError(
                    "env/secret_env/workdir: the pod's own command cannot take them at run time; "
                    "set them in the spec options (env, secret_env) instead"
                )
            return self._follow_pod(handle.resource_id, ns, request, output, cancel)
        if handle.details.get("mode") != "workspace":
            raise RunnerSpecError(
                f"command: pod {handle.resource_id} runs its own command (mode 'command'); use "
                f"command={POD_COMMAND!r}, or a spec with options.mode 'workspace' to exec commands"
            )
        pod = self._get(handle.resource_id, ns)
        if pod is None:
            raise RunnerCommandError(f"pod {ns}/{handle.resource_id} is gone")
        return exec_command(self, pod, request, output, cancel)

    def _follow_pod(
        self, name: str, ns: str, request: CommandRequest, output: OutputSink, cancel: threading.Event
    ) -> CommandResult:
        """Stream the main container's log until its command ends; its exit code is the result."""
        lines: queue.Queue[str | None] = queue.Queue()
        stop = threading.Event()
        reader = threading.Thread(target=self._read_logs, args=(name, ns, lines, stop), daemon=True)
        reader.start()
        deadline = time.monotonic() + request.timeout
        next_check, ended = 0.0, False
        try:
            while True:
                if _drain(lines, output, wait=0.5):
                    ended = True  # the log stream ended: the command probably did too
                    next_check = 0.0
                if cancel.is_set() or time.monotonic() > deadline:
                    timed_out = not cancel.is_set()
                    self._delete_and_wait(name, ns, None)
                    return CommandResult(
                        None, timed_out=timed_out, cancelled=not timed_out, details={"pod": name}
                    )
                if time.monotonic() < next_check:
                    continue
                next_check = time.monotonic() + (0.25 if ended else self.command_poll_s)
                pod = self._get(name, ns)
                if pod is None:
                    raise RunnerCommandError(f"pod {ns}/{name} was deleted before its command finished")
                facts = podlib.final_facts(pod)
                if facts["exit_code"] is not None or pod.get("status", {}).get("phase") in (
                    "Succeeded",
                    "Failed",
                ):
                    reader.join(timeout=10)
                    _drain(lines, output, wait=0)
                    if facts["exit_code"] is None:
                        raise RunnerCommandError(
                            f"pod {ns}/{name} ended {facts['phase']} without an exit code ({facts['reason']})"
                        )
                    code = facts.pop("exit_code")
                    return CommandResult(code, details={"pod": name, "namespace": ns, **facts})
        finally:
            stop.set()

    def _read_logs(self, name: str, ns: str, lines: queue.Queue[str | None], stop: threading.Event) -> None:
        """Follow the log stream (retrying while the container has not started) into ``lines``."""
        try:
            while not stop.is_set():
                try:
                    response = self.api().read_namespaced_pod_log(
                        name, ns, container=podlib.MAIN, follow=True, _preload_content=False
                    )
                except self._api_exception() as exc:
                    if getattr(exc, "status", None) == 400:  # container not started yet
                        stop.wait(1.0)
                        continue
                    return
                pending = b""
                for chunk in response.stream(4096):
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for raw in complete:
                        lines.put(raw.decode(errors="replace"))
                if pending:
                    lines.put(pending.decode(errors="replace"))
                return
        finally:
            lines.put(None)


def _drain(lines: queue.Queue[str | None], output: OutputSink, wait: float) -> bool:
    """Pass queued lines to ``output``; True when the reader's end marker was among them."""
    ended = False
    try:
        item = lines.get(timeout=wait) if wait else lines.get_nowait()
        while True:
            if item is None:
                ended = True
            else:
                output(item)
            item = lines.get_nowait()
    except queue.Empty:
        return ended


def _reason(exc: Any) -> str:
    try:
        body = json.loads(exc.body)
        return f"{exc.status} {body.get('reason')}: {body.get('message')}"
    except (TypeError, ValueError, AttributeError):
        return f"{getattr(exc, 'status', '?')} {getattr(exc, 'reason', exc)}"
