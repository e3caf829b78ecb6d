"""Pod manifests for the ``kubernetes`` backend: template + spec overrides, checked at DAG parse time.

A pod is built from a **template** (a YAML file — ``pod_template_file`` in the spec options or
the Connection — or a ``pod_template`` dict in the spec options; a bare pod with one container
``main`` when there is none), then overridden by the spec:

=====================  ==============================================================================
image                  the catalog image pinned by digest: ``[<image_registry>/]<name>@sha256:...``
command / args         ``options.command`` (list or shell string) / ``options.args``
resources              the catalog profile: ``vcpus`` -> cpu request = limit, ``memory_gib`` -> memory
node selector          profile ``options.node_selector``, tags mapped by the Connection's
                       ``tag_node_selector`` (``{"tenant": "runners.example.com/tenant"}`` gives
                       ``nodeSelector`` *and* a matching NoSchedule toleration: per-tenant node pools),
                       ``options.node_selector``
tolerations            profile ``options.tolerations`` + ``options.tolerations``
service account        ``options.service_account`` or the Connection's ``service_account``; its token
                       is not mounted unless ``options.automount_service_account_token`` is true
workspace              an ``emptyDir`` volume ``workspace`` at ``/workspace`` (``sizeLimit`` =
                       ``options.workspace_size`` or the profile's ``disk_gib``), the working directory;
                       it lives and dies with the pod
environment            ``options.env`` (plain), ``options.secret_env`` (``k8s-secret:<name>#<key>``
                       -> ``valueFrom.secretKeyRef``: the value never enters the manifest),
                       ``RUNNERS_LINEAGE``, ``RUNNERS_MAP_INDEX``, ``RUNNERS_WORKSPACE``
backstop               ``activeDeadlineSeconds`` = the spec's ttl (the kubelet kills the pod after it)
labels                 managed-by, runner-lineage, dag-id, task-id, tenant, pipeline, profile,
                       expires-at, runner-env (+ the template's)
=====================  ==============================================================================

``mode``: ``command`` (the pod runs its own command to completion, ``restartPolicy: Never``; the
default when a command is given) or ``workspace`` (a long-lived pod — ``sleep`` for the ttl
unless the template says otherwise — that commands are exec'd into).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from airflow_provider_runners.core.redact import is_secret_key
from airflow_provider_runners.core.secret_refs import parse_secret_env
from airflow_provider_runners.exceptions import RunnerSpecError

if TYPE_CHECKING:
    from airflow_provider_runners.core.backend import ProvisionRequest
    from airflow_provider_runners.core.catalog import ResolvedSpec
    from airflow_provider_runners.core.specs import RunnerSpec

NAME_PREFIX = "rp-"
MAIN = "main"
WORKSPACE = "/workspace"
ANNOTATION = "airflow-provider-runners"  # annotation key prefix
#: container waiting reasons that mean the pod will not start by itself (failed after the grace)
BAD_WAITING = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "InvalidImageName"}
)
MODES = ("command", "workspace")
OPTION_KEYS = frozenset(
    {
        "mode",
        "command",
        "args",
        "env",
        "secret_env",
        "node_selector",
        "tolerations",
        "service_account",
        "automount_service_account_token",
        "workspace_size",
        "pod_template_file",
        "pod_template",
    }
)
_QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_TOLERATION_KEYS = frozenset({"key", "operator", "value", "effect", "tolerationSeconds"})


def pod_name(lineage_key: str) -> str:
    """Deterministic pod name for a task instance: ``rp-<lineage key>`` (the same on every try)."""
    return NAME_PREFIX + lineage_key.lower()


def load_template(source: str | Mapping[str, Any] | None, field: str) -> dict[str, Any]:
    """A pod template from a YAML file path or a dict; RunnerSpecError naming ``field`` if malformed."""
    if source is None:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {"containers": [{"name": MAIN}]}}
    if isinstance(source, str):
        try:
            text = Path(source).expanduser().read_text()
        except OSError as exc:
            raise RunnerSpecError(f"{field}: {source!r} cannot be read ({exc.strerror})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RunnerSpecError(f"{field}: {source!r} is not valid YAML: {exc}") from None
    elif isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
    else:
        raise RunnerSpecError(f"{field}: expected a YAML file path or a mapping, got {type(source).__name__}")
    if not isinstance(data, dict):
        raise RunnerSpecError(f"{field}: {source!r} is not a pod manifest (expected a mapping)")
    if data.get("kind", "Pod") != "Pod" or data.get("apiVersion", "v1") != "v1":
        raise RunnerSpecError(
            f"{field}: kind {data.get('kind')!r} apiVersion {data.get('apiVersion')!r}; allowed: kind Pod, apiVersion v1"
        )
    spec = data.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list) or not containers or not all(isinstance(c, dict) for c in containers):
        raise RunnerSpecError(f"{field}: spec.containers must be a non-empty list of containers")
    for i, container in enumerate(containers):
        if not isinstance(container.get("name"), str) or not container["name"]:
            raise RunnerSpecError(f"{field}: spec.containers[{i}] has no name")
        for j, item in enumerate(container.get("env") or []):
            if "value" in item and is_secret_key(str(item.get("name", ""))):
                raise RunnerSpecError(
                    f"{field}: spec.containers[{i}].env[{j}] ({item.get('name')}) holds a secret value; "
                    "use valueFrom.secretKeyRef or options.secret_env"
                )
    data.setdefault("apiVersion", "v1")
    data.setdefault("kind", "Pod")
    data.setdefault("metadata", {})
    return data


def main_container(pod: Mapping[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod["spec"]["containers"]
    return next((c for c in containers if c.get("name") == MAIN), containers[0])


def _str_map(value: Any, field: str, keys_are_labels: bool = False) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise RunnerSpecError(f"{field}: {value!r}; allowed: a mapping of strings to strings")
    if keys_are_labels:
        for key in value:
            if not _LABEL_KEY_RE.match(key):
                raise RunnerSpecError(f"{field}: {key!r} is not a Kubernetes label key")
    return dict(value)


def _command(value: Any, field: str) -> list[str]:
    if isinstance(value, str) and value.strip():
        return ["/bin/sh", "-c", value]
    if isinstance(value, list | tuple) and value and all(isinstance(p, str) for p in value):
        return list(value)
    raise RunnerSpecError(f"{field}: {value!r}; allowed: a shell string or a non-empty list of strings")


def _tolerations(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise RunnerSpecError(f"{field}: {value!r}; allowed: a list of toleration mappings")
    for i, tol in enumerate(value):
        unknown = set(tol) - _TOLERATION_KEYS
        if unknown:
            raise RunnerSpecError(
                f"{field}[{i}]: unknown keys {sorted(unknown)}; allowed: {sorted(_TOLERATION_KEYS)}"
            )
    return [dict(t) for t in value]


def _gib(value: float) -> str:
    return f"{int(value)}Gi" if float(value).is_integer() else f"{int(value * 1024)}Mi"


def _template(options: Mapping[str, Any], template_file: str | None) -> dict[str, Any]:
    if "pod_template" in options and "pod_template_file" in options:
        raise RunnerSpecError("spec.options: give pod_template or pod_template_file, not both")
    if "pod_template" in options:
        return load_template(options["pod_template"], "spec.options.pod_template")
    source = options.get("pod_template_file", template_file)
    field = "spec.options.pod_template_file" if "pod_template_file" in options else "pod_template_file"
    return load_template(source, field)


def _environment(options: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    env = _str_map(options.get("env", {}), "spec.options.env")
    for name in env:
        if is_secret_key(name):
            raise RunnerSpecError(
                f"spec.options.env.{name}: looks like a secret; use spec.options.secret_env"
            )
    refs = parse_secret_env(options.get("secret_env"))
    for name, ref in refs.items():
        if ref.kind != "k8s-secret":
            raise RunnerSpecError(
                f"spec.options.secret_env.{name}: {ref.kind!r} references cannot be put in a pod; allowed: k8s-secret"
            )
    return env, dict(refs)


def check_options(
    spec: RunnerSpec, resolved: ResolvedSpec, template_file: str | None = None
) -> dict[str, Any]:
    """Validate ``spec.options`` and the template; return the normalised options (parse time and create time)."""
    options = dict(spec.options)
    unknown = set(options) - OPTION_KEYS
    if unknown:
        raise RunnerSpecError(
            f"spec.options: {sorted(unknown)} not supported by kubernetes; allowed: {sorted(OPTION_KEYS)}"
        )
    template = _template(options, template_file)
    out: dict[str, Any] = {"template": template}
    main = main_container(template)
    if "command" in options:
        out["command"] = _command(options["command"], "spec.options.command")
    if "args" in options:
        args = options["args"]
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise RunnerSpecError(f"spec.options.args: {args!r}; allowed: a list of strings")
        out["args"] = list(args)
    has_command = "command" in out or bool(main.get("command"))
    mode = options.get("mode", "command" if has_command else "workspace")
    if mode not in MODES:
        raise RunnerSpecError(f"spec.options.mode: {mode!r}; allowed: {list(MODES)}")
    if mode == "command" and not has_command:
        raise RunnerSpecError("spec.options.command: required with mode 'command' (the template has none)")
    out["mode"] = mode
    out["env"], out["secret_env"] = _environment(options)
    profile_opts = resolved.profile.options
    out["node_selector"] = {
        **_str_map(profile_opts.get("node_selector", {}), "profile options.node_selector", True),
        **_str_map(options.get("node_selector", {}), "spec.options.node_selector", True),
    }
    out["tolerations"] = _tolerations(profile_opts.get("tolerations", []), "profile options.tolerations") + (
        _tolerations(options.get("tolerations", []), "spec.options.tolerations")
    )
    account = options.get("service_account")
    if account is not None and not (
        isinstance(account, str) and re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", account)
    ):
        raise RunnerSpecError(f"spec.options.service_account: {account!r} is not a service account name")
    out["service_account"] = account
    out["automount"] = bool(options.get("automount_service_account_token", False))
    size = options.get("workspace_size") or (
        _gib(resolved.profile.disk_gib) if resolved.profile.disk_gib else "1Gi"
    )
    if not isinstance(size, str) or not _QUANTITY_RE.match(size):
        raise RunnerSpecError(f"spec.options.workspace_size: {size!r}; allowed: a quantity such as '10Gi'")
    out["workspace_size"] = size
    if spec.image is None and not main.get("image"):
        raise RunnerSpecError("spec.image: required (the pod template's main container has no image)")
    return out


def tag_scheduling(
    spec: RunnerSpec, tag_node_selector: Mapping[str, str]
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """nodeSelector and tolerations for tags mapped to node labels by the Connection."""
    tags = spec.tags
    values = {"tenant": tags.tenant, "pipeline": tags.pipeline, "cost_center": tags.cost_center, **tags.extra}
    selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    for tag, node_label in tag_node_selector.items():
        value = values.get(tag)
        if value:
            selector[node_label] = value
            tolerations.append(
                {"key": node_label, "operator": "Equal", "value": value, "effect": "NoSchedule"}
            )
    return selector, tolerations


def build_pod(
    request: ProvisionRequest,
    options: Mapping[str, Any],
    *,
    name: str,
    namespace: str,
    image: str | None,
    labels: Mapping[str, str],
    service_account: str | None,
    tag_node_selector: Mapping[str, str],
    grace_period_s: int,
) -> dict[str, Any]:
    """The pod manifest sent to the API server (no secret values: secrets are secretKeyRefs)."""
    spec, profile = request.spec, request.resolved.profile
    pod = copy.deepcopy(options["template"])
    meta = pod.setdefault("metadata", {})
    meta.pop("generateName", None)
    meta["name"], meta["namespace"] = name, namespace
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        f"{ANNOTATION}/attempt-token": request.attempt_token,
        f"{ANNOTATION}/mode": options["mode"],
        f"{ANNOTATION}/lineage": f"{request.lineage.dag_id}/{request.lineage.run_id}/{request.lineage.task_id}"
        f"/{request.lineage.map_index}",
        f"{ANNOTATION}/conn-id": request.conn_id,
    }
    body = pod["spec"]
    ttl_s = int(spec.ttl.total_seconds())
    body["activeDeadlineSeconds"] = min(int(body.get("activeDeadlineSeconds") or ttl_s), ttl_s)
    body["restartPolicy"] = "Never" if options["mode"] == "command" else body.get("restartPolicy", "Always")
    body["terminationGracePeriodSeconds"] = int(body.get("terminationGracePeriodSeconds", grace_period_s))
    account = options["service_account"] or service_account
    if account:
        body["serviceAccountName"] = account
    body["automountServiceAccountToken"] = options["automount"] or bool(
        body.get("automountServiceAccountToken")
    )
    tag_selector, tag_tolerations = tag_scheduling(spec, tag_node_selector)
    selector = {**(body.get("nodeSelector") or {}), **tag_selector, **options["node_selector"]}
    if selector:
        body["nodeSelector"] = selector
    tolerations = [*(body.get("tolerations") or []), *tag_tolerations, *options["tolerations"]]
    if tolerations:
        body["tolerations"] = tolerations
    volumes = [v for v in body.get("volumes") or [] if v.get("name") != "workspace"]
    body["volumes"] = [*volumes, {"name": "workspace", "emptyDir": {"sizeLimit": options["workspace_size"]}}]
    main = main_container(pod)
    if image:
        main["image"] = image
    if "command" in options:
        main["command"] = list(options["command"])
    if "args" in options:
        main["args"] = list(options["args"])
    if options["mode"] == "workspace" and not main.get("command"):
        main["command"] = ["sleep", str(ttl_s)]
    resources: dict[str, str] = {}
    if profile.vcpus:
        resources["cpu"] = str(profile.vcpus).removesuffix(".0")
    if profile.memory_gib:
        resources["memory"] = _gib(profile.memory_gib)
    if resources:
        main["resources"] = {"requests": dict(resources), "limits": dict(resources)}
    ours = {
        "RUNNERS_LINEAGE": request.lineage.key,
        "RUNNERS_MAP_INDEX": str(request.lineage.map_index),
        "RUNNERS_WORKSPACE": WORKSPACE,
        **options["env"],
    }
    env = [
        e
        for e in main.get("env") or []
        if e.get("name") not in ours and e.get("name") not in options["secret_env"]
    ]
    env += [{"name": k, "value": v} for k, v in ours.items()]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        for k, ref in options["secret_env"].items()
    ]
    main["env"] = env
    mounts = [m for m in main.get("volumeMounts") or [] if m.get("name") != "workspace"]
    main["volumeMounts"] = [*mounts, {"name": "workspace", "mountPath": WORKSPACE}]
    main.setdefault("workingDir", WORKSPACE)
    return pod


def final_facts(pod: Mapping[str, Any]) -> dict[str, Any]:
    """Phase, exit codes, restarts and finish time of a pod (evidence, teardown details)."""
    status = pod.get("status", {})
    codes: dict[str, Any] = {}
    restarts = 0
    finished = None
    for cs in status.get("containerStatuses") or []:
        restarts += int(cs.get("restartCount") or 0)
        term = (cs.get("state") or {}).get("terminated")
        codes[cs.get("name")] = term.get("exitCode") if term else None
        if term and cs.get("name") == MAIN:
            finished = term.get("finishedAt")
    return {
        "phase": status.get("phase", "Unknown"),
        "reason": status.get("reason"),
        "exit_code": codes.get(MAIN, next(iter(codes.values()), None)) if codes else None,
        "exit_codes": codes,
        "restarts": restarts,
        "finished": finished,
    }


def main_status(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The status of the pod's ``main`` container (the first container's if none is named so)."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    main = next((s for s in statuses if s.get("name") == MAIN), statuses[0] if statuses else {})
    return dict(main)


def bad_reason(pod: Mapping[str, Any]) -> str | None:
    """Why a pod cannot start: a bad container waiting reason or Unschedulable, with its message."""
    status = pod.get("status", {})
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in BAD_WAITING:
            return f"{waiting['reason']} ({cs.get('name')}): {waiting.get('message', '')}".rstrip(": ")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            return f"Unschedulable: {cond.get('message', '')}"
    return None
