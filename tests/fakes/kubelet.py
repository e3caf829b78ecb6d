"""The kubelet stand-in of the test Kubernetes API (tests/fakes/kubernetes.py): one node running pods as local processes."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KUBELET_AGENT = "kubelet-standin"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def running_status(image: str, image_id: str) -> dict[str, Any]:
    """The status a kubelet reports when a pod's ``main`` container has started."""
    started = now_iso()
    return {
        "phase": "Running",
        "startTime": started,
        "podIP": "10.0.0.7",
        "hostIP": "192.168.0.10",
        "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": started}
            for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ],
        "containerStatuses": [
            {
                "name": "main",
                "image": image,
                "imageID": image_id,
                "containerID": f"containerd://{uuid.uuid4().hex}",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            }
        ],
    }


@dataclass
class PodLog:
    lines: list[bytes] = field(default_factory=list)
    done: bool = False


@dataclass
class RunningPod:
    uid: str
    name: str
    namespace: str
    workspace: Path
    log: PodLog
    proc: subprocess.Popen[bytes] | None = None
    started: float = field(default_factory=time.monotonic)
    deadline_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    mounts: dict[str, str] = field(default_factory=dict)
    finished: bool = False


class Kubelet(threading.Thread):
    """One node, ``node-1``, running pods as local processes (see the module docstring)."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        super().__init__(name="kubelet-standin", daemon=True)
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = url
        api = client.ApiClient(cfg)
        api.user_agent = KUBELET_AGENT
        self.api = client.CoreV1Api(api)
        self.interval = interval
        self.script: list[str] = []
        self.default = "run"
        self.pods: dict[str, RunningPod] = {}
        self.seen: dict[str, str] = {}  # uid -> behaviour
        self.deleted: list[str] = []  # pod names removed after a graceful delete
        self.removed_workspaces: list[Path] = []
        self.errors: list[BaseException] = []
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._root = Path(tempfile.mkdtemp(prefix="kubelet-"))

    # -- what the API server asks ----------------------------------------------------------------
    def log_of(self, uid: str) -> PodLog | None:
        with self._lock:
            pod = self.pods.get(uid)
        return pod.log if pod is not None and pod.proc is not None else None

    def exec_target(
        self, pod: dict[str, Any], command: list[str]
    ) -> tuple[list[str], dict[str, str], str] | None:
        with self._lock:
            running = self.pods.get(pod["metadata"]["uid"])
        if running is None or running.proc is None or running.finished:
            return None
        return [self._map(running, part) for part in command], dict(running.env), str(running.workspace)

    # -- loop -----------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)
        for running in list(self.pods.values()):
            self._kill(running, 0)
        shutil.rmtree(self._root, ignore_errors=True)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - recorded; tests assert there are none
                self.errors.append(exc)

    def _json(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        response = getattr(self.api, method)(*args, _preload_content=False, **kwargs)
        return json.loads(response.data) if response.data else {}

    def tick(self) -> None:
        pods = self._json("list_pod_for_all_namespaces").get("items", [])
        present = {pod["metadata"]["uid"] for pod in pods}
        for uid in [uid for uid in self.pods if uid not in present]:  # deleted at once (not running)
            with self._lock:
                running = self.pods.pop(uid)
            self._kill(running, 0)
            shutil.rmtree(running.workspace, ignore_errors=True)
            self.removed_workspaces.append(running.workspace)
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if pod["metadata"].get("deletionTimestamp"):
                self._finalise(pod)
            elif uid not in self.seen:
                behaviour = self.script.pop(0) if self.script else self.default
                self.seen[uid] = behaviour
                getattr(self, f"_start_{behaviour}")(pod)
            elif uid in self.pods:
                self._check(pod, self.pods[uid])

    def _patch(self, pod: dict[str, Any], body: dict[str, Any], status: bool = True) -> None:
        meta = pod["metadata"]
        method = "patch_namespaced_pod_status" if status else "patch_namespaced_pod"
        with contextlib.suppress(Exception):  # the pod may be gone meanwhile
            self._json(method, meta["name"], meta["namespace"], body)

    def _event(self, pod: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        body = {
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message,
            "lastTimestamp": now_iso(),
            "count": 1,
            "source": {"component": "kubelet", "host": "node-1"},
        }
        self._json("create_namespaced_event", meta["namespace"], body)

    def _bind(self, pod: dict[str, Any]) -> None:
        self._patch(pod, {"spec": {"nodeName": "node-1"}}, status=False)
        self._event(
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {pod['metadata']['namespace']}/{pod['metadata']['name']} to node-1",
        )

    @staticmethod
    def _image_id(image: str) -> str:
        repo, _, digest = image.partition("@")
        digest = digest or "sha256:" + hashlib.sha256(image.encode()).hexdigest()
        return f"docker.io/library/{repo.split(':')[0]}@{digest}"

    # -- behaviours ------------------------------------------------------------------------------
    def _start_pending(self, pod: dict[str, Any]) -> None:
        pass

    def _start_unschedulable(self, pod: dict[str, Any]) -> None:
        message = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available."
        self._patch(
            pod,
            {
                "status": {
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": message,
                            "lastTransitionTime": now_iso(),
                        }
                    ]
                }
            },
        )
        self._event(pod, "Warning", "FailedScheduling", message)

    def _start_imagepull(self, pod: dict[str, Any]) -> None:
        self._bind(pod)
        image = pod["spec"]["containers"][0].get("image", "")
        self._patch(
            pod,
            {
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [
                        {
                            "name": "main",
                            "image": image,
                            "ready": False,
                            "restartCount": 0,
                            "state": {
                                "waiting": {
                                    "reason": "ImagePullBackOff",
                                    "message": f'Back-off pulling image "{image}"',
                                }
                            },
                        }
                    ],
                }
            },
        )
        self._event(pod, "Warning", "Failed", f'Failed to pull image "{image}": not found')
        self._event(pod, "Warning", "Failed", "Error: ImagePullBackOff")

    def _start_crashloop(self, pod: dict[str, Any]) -> None:
        self._bind(pod)
        image = pod["spec"]["containers"][0].get("image", "")
        name = pod["metadata"]["name"]
        self._patch(
            pod,
            {
                "status": {
                    "phase": "Running",
                    "startTime": now_iso(),
                    "containerStatuses": [
                        {
                            "name": "main",
                            "image": image,
                            "imageID": self._image_id(image),
                            "ready": False,
                            "restartCount": 3,
                            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                            "state": {
                                "waiting": {
                                    "reason": "CrashLoopBackOff",
                                    "message": f"back-off 40s restarting failed container=main pod={name}",
                                }
                            },
                        }
                    ],
                }
            },
        )
        self._event(pod, "Warning", "BackOff", f"Back-off restarting failed container main in pod {name}")

    def _secret_value(self, ns: str, ref: dict[str, Any]) -> str:
        secret = self._json("read_namespaced_secret", ref["name"], ns)
        return base64.b64decode(secret["data"][ref["key"]]).decode()

    def _start_run(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        main = next((c for c in spec["containers"] if c["name"] == "main"), spec["containers"][0])
        self._bind(pod)
        running = RunningPod(
            uid=meta["uid"],
            name=meta["name"],
            namespace=meta["namespace"],
            workspace=self._root / meta["uid"],
            log=PodLog(),
            deadline_s=spec.get("activeDeadlineSeconds"),
        )
        running.workspace.mkdir()
        running.mounts = {
            m["mountPath"]: str(running.workspace)
            for m in main.get("volumeMounts") or []
            if m["name"] == "workspace"
        }
        env = {"PATH": os.environ["PATH"], "HOME": str(running.workspace), "HOSTNAME": meta["name"]}
        try:
            for item in main.get("env") or []:
                if "value" in item:
                    env[item["name"]] = self._map(running, item["value"])
                elif (item.get("valueFrom") or {}).get("secretKeyRef"):
                    env[item["name"]] = self._secret_value(
                        meta["namespace"], item["valueFrom"]["secretKeyRef"]
                    )
        except Exception as exc:  # noqa: BLE001 - a missing Secret: what the kubelet reports
            self._patch(
                pod,
                {
                    "status": {
                        "containerStatuses": [
                            {
                                "name": "main",
                                "ready": False,
                                "restartCount": 0,
                                "state": {
                                    "waiting": {
                                        "reason": "CreateContainerConfigError",
                                        "message": str(exc)[:200],
                                    }
                                },
                            }
                        ]
                    }
                },
            )
            return
        running.env = env
        argv = [self._map(running, p) for p in [*(main.get("command") or []), *(main.get("args") or [])]]
        cwd = self._map(running, main.get("workingDir") or str(running.workspace))
        running.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        threading.Thread(target=self._pump, args=(running,), daemon=True).start()
        with self._lock:
            self.pods[running.uid] = running
        image = main.get("image", "")
        self._patch(pod, {"status": running_status(image, self._image_id(image))})
        self._event(pod, "Normal", "Started", "Started container main")

    def _map(self, running: RunningPod, text: str) -> str:
        for mount, host in running.mounts.items():
            if text == mount or text.startswith(mount + "/"):
                return host + text[len(mount) :]
            text = text.replace(f" {mount}", f" {host}").replace(f"={mount}", f"={host}")
        return text

    @staticmethod
    def _pump(running: RunningPod) -> None:
        assert running.proc is not None
        assert running.proc.stdout is not None
        for line in iter(running.proc.stdout.readline, b""):
            running.log.lines.append(line)
        running.proc.wait()
        running.log.done = True

    def _check(self, pod: dict[str, Any], running: RunningPod) -> None:
        if running.finished or running.proc is None:
            return
        code = running.proc.poll()
        reason, phase_reason = ("Completed" if code == 0 else "Error"), None
        if code is None:
            if running.deadline_s is None or time.monotonic() - running.started < running.deadline_s:
                return
            self._kill(running, 0)
            code, reason, phase_reason = 137, "DeadlineExceeded", "DeadlineExceeded"
        while not running.log.done:
            time.sleep(0.01)
        running.finished = True
        image = pod["spec"]["containers"][0].get("image", "")
        status: dict[str, Any] = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": [
                *[c for c in pod["status"].get("conditions", []) if c["type"] != "Ready"],
                {"type": "Ready", "status": "False", "lastTransitionTime": now_iso()},
            ],
            "containerStatuses": [
                {
                    "name": "main",
                    "image": image,
                    "imageID": self._image_id(image),
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": code, "reason": reason, "finishedAt": now_iso()}},
                }
            ],
        }
        if phase_reason:
            status.update(
                reason=phase_reason, message="Pod was active on the node longer than the specified deadline"
            )
        self._patch(pod, {"status": status})

    def _kill(self, running: RunningPod, grace: float) -> None:
        proc = running.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=max(grace, 0.5))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def _finalise(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        with self._lock:
            running = self.pods.pop(meta["uid"], None)
        if running is not None:
            self._kill(running, min(float(meta.get("deletionGracePeriodSeconds") or 0), 5.0))
            shutil.rmtree(running.workspace, ignore_errors=True)
            self.removed_workspaces.append(running.workspace)
        with contextlib.suppress(Exception):
            self._json("delete_namespaced_pod", meta["name"], meta["namespace"], grace_period_seconds=0)
        self.deleted.append(meta["name"])

    def live_processes(self) -> list[int]:
        return [p.proc.pid for p in self.pods.values() if p.proc is not None and p.proc.poll() is None]
