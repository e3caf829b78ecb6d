"""The ``kubernetes`` platform of ``triggerer_real.py --backend kubernetes``: pods in the emulator.

``triggerer_real.py`` measures N deferred waits in a real ``airflow triggerer`` against an
emulated platform. With ``--backend kubernetes`` that platform is the Kubernetes API server of
``tests/fakes/kubernetes.py`` (in a process of its own, no kubelet, as in ``k8s_api_calls.py``),
and the waits are ``RunnerReadyTrigger`` s of the provider's real ``kubernetes`` backend, which
LISTs the managed pods once per poll and spends the pause between two LISTs in one WATCH
(docs/kubernetes.md). A pod turns ready when this process patches its status to Running; the
latency runs from the moment that patch was answered.

:class:`KubePlatform` has the interface ``triggerer_real.measure`` uses of its bench platform:
``add`` (create the pods, Pending, and patch each to Running at its instant), ``calls`` (LIST and
WATCH requests of pods), ``seen`` (every pod created, once the backend has LISTed after it),
``first_ready`` (empty: a watch's detection moment is the trigger's, not the server's, so the
row has no detection / handover split), plus ``flipped`` (pod -> when its patch was answered)
and ``reset`` (delete every pod between two rows).
"""

from __future__ import annotations

import heapq
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks import _k8s_waits

NAMESPACE = _k8s_waits.NAMESPACE
IMAGE = "hardened-base@sha256:00"
LIST = "LIST pods (labelSelector)"
WATCH = "WATCH pods (labelSelector)"


def pod_body(name: str) -> dict[str, Any]:
    """A pod as the backend labels its own (``managed-by``), ``command`` mode, one ``main`` container."""
    from airflow_provider_runners.backends.kubernetes import pod as podlib
    from airflow_provider_runners.core.lineage import MANAGED_BY

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"managed-by": MANAGED_BY, "runner-lineage": name},
            "annotations": {f"{podlib.ANNOTATION}/mode": "command"},
        },
        "spec": {"containers": [{"name": podlib.MAIN, "image": IMAGE}], "restartPolicy": "Never"},
    }


class KubePlatform:
    """The emulated API server and the pods of the benchmark's waits (see the module docstring)."""

    def __init__(self) -> None:
        from kubernetes import client

        self.process, self.conn, self.url = _k8s_waits.start_server()  # forked before any thread
        self.api = client.CoreV1Api(client.ApiClient(client.Configuration(host=self.url)))
        self.lock = threading.Lock()
        self.created: set[str] = set()
        self.lists_at_create = 0
        self.flipped: dict[str, float] = {}
        self.first_ready: dict[str, float] = {}
        self.ids_asked = 0
        self._due: list[tuple[float, str]] = []
        self._wake = threading.Condition(self.lock)
        self._pool = ThreadPoolExecutor(4)
        threading.Thread(target=self._flipper, daemon=True, name="flipper").start()

    def connection(self, poll_interval: float) -> dict[str, Any]:
        del poll_interval  # the trigger carries it (RunnerReadyTrigger(poll_interval=...))
        return {"conn_type": "runners_kubernetes", "host": self.url, "extra": {"namespace": NAMESPACE}}

    def _counts(self) -> Any:
        with self.lock:  # one request / answer at a time on the pipe
            self.conn.send("counts")
            return self.conn.recv()

    @property
    def calls(self) -> int:
        counts = self._counts()
        return int(counts[LIST] + counts[WATCH])

    @property
    def seen(self) -> set[str]:
        """Every created pod once two LISTs began after the last create (the backend knows them)."""
        return set(self.created) if self._counts()[LIST] >= self.lists_at_create + 2 else set()

    def add(self, ids: list[str], ready_at: float) -> None:
        new = [i for i in ids if i not in self.created]
        if new:
            list(self._pool.map(lambda n: self.api.create_namespaced_pod(NAMESPACE, pod_body(n)), new))
            self.created.update(new)
            self.lists_at_create = self._counts()[LIST]
        if ready_at != float("inf"):
            with self._wake:
                for rid in ids:
                    heapq.heappush(self._due, (ready_at, rid))
                self._wake.notify()

    def _flip(self, name: str) -> None:
        from tests.fakes.kubelet import running_status

        status = {"status": running_status(IMAGE, f"docker.io/library/{IMAGE}")}
        self.api.patch_namespaced_pod_status(name, NAMESPACE, status, _preload_content=False)
        self.flipped[name] = time.time()

    def _flipper(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.time():
                    self._wake.wait(None if not self._due else max(0.0, self._due[0][0] - time.time()))
                _, name = heapq.heappop(self._due)
            self._pool.submit(self._flip, name)

    def reset(self) -> None:
        """Delete every pod of the earlier rows: the backend LISTs all managed pods of the namespace."""
        names, self.created = sorted(self.created), set()
        self.flipped.clear()
        delete = self.api.delete_namespaced_pod
        list(self._pool.map(lambda n: delete(n, NAMESPACE, grace_period_seconds=0), names))

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        _k8s_waits.stop_server(self.process, self.conn)
