"""Between two status polls of the ``kubernetes`` backend: one WATCH of its pods instead of a sleep.

The shared poller (``triggers/poller.py``) reads every waiting pod with one LIST per namespace,
then pauses for the poll interval. :meth:`KubernetesBackend.wait_for_change` (the
``WaitsForChange`` capability of ``core/backend.py``) spends that pause in one WATCH of the same
label selector: it returns as soon as a waited pod is modified or deleted, or already differs
(``resourceVersion``) from what the last LIST saw, so a pod that starts is seen within
milliseconds instead of half a poll interval on average, and a quiet interval costs one LIST and
one WATCH however many pods wait (docs/benchmarks.md, Kubernetes). Under a storm of changes,
LISTs are at least :data:`MIN_LIST_GAP_S` apart.

The watch starts at the last LIST's ``resourceVersion``, as client-go's informers do: the API
server sends only what changed since that LIST (nothing is missed between the two, and a quiet
pause streams no pod at all), so any event for a waited pod ends the pause. If that version is
too old for the server (``410 Gone``, an ``ERROR`` event or the answer), the pause ends and the
poller LISTs again. Without a LIST version (the pods were last read one by one), the watch asks
without one: the server first sends the current pods as ``ADDED``, compared here with what the
last reads saw. A watch that
the cluster refuses (RBAC without the ``watch`` verb on pods: docs/kubernetes.md) or that fails
is logged once per backend and the rest of the pause is slept, as before this module; a refusal
(403) stops further tries for the backend's lifetime. It creates nothing and holds one HTTP
connection for at most the poll interval.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

#: Shortest time between the end of one LIST and the next, when pods keep changing.
MIN_LIST_GAP_S = 0.5


class PodWatch:
    """What the last LIST saw of the waited pods, and the watch that waits for them to change."""

    def __init__(self) -> None:
        self.versions: dict[str, str] = {}  # pod name -> resourceVersion at the last LIST
        self.list_version: str | None = None  # the last LIST's own resourceVersion: the watch starts there
        self.listed_at = -math.inf
        self.refused = False
        self.failed_once = False

    def saw(
        self, pods: Mapping[str, Mapping[str, Any]], replace: bool, list_version: str | None = None
    ) -> None:
        """Record what a LIST (``replace``: of every waited pod, with the LIST's ``list_version``)
        or a GET of one pod answered."""
        seen = {name: str(p.get("metadata", {}).get("resourceVersion")) for name, p in pods.items()}
        if replace:
            self.versions = seen
            self.list_version = list_version or None
        else:
            self.versions.update(seen)
        self.listed_at = time.monotonic()

    def wait(
        self,
        open_stream: Callable[[float, str | None], Any],
        names: Iterable[str],
        timeout: float,
        refused: Callable[[Exception], bool],
    ) -> bool:
        """Block until a pod in ``names`` changed (True) or ``timeout`` seconds passed (False).

        ``open_stream(seconds, resource_version)`` starts the WATCH (from that version, if not
        None) and returns the streaming HTTP response.
        """
        deadline = time.monotonic() + timeout
        waited = set(names)
        if self.refused or not waited:
            time.sleep(max(0.0, timeout))
            return False
        changed = False
        response = None
        try:
            since = self.list_version
            response = open_stream(timeout, since)
            for event in _events(response):
                if event.get("type") == "ERROR":  # a Status; 410 Expired: too old a version, LIST again
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        log.debug("watch from %s expired: %s", since, status.get("message"))
                        changed = True  # the LISTs stay MIN_LIST_GAP_S apart all the same
                        break
                    raise RuntimeError(
                        f"{status.get('code')} {status.get('reason')}: {status.get('message')}"
                    )
                name = event.get("object", {}).get("metadata", {}).get("name")
                if name in waited and (since is not None or self._changed(event, name)):
                    changed = True
                    break
                if time.monotonic() >= deadline:
                    break
            if changed:  # under a storm of changes, LISTs stay MIN_LIST_GAP_S apart
                time.sleep(max(0.0, min(deadline, self.listed_at + MIN_LIST_GAP_S) - time.monotonic()))
            return changed
        except Exception as exc:  # noqa: BLE001 - the poll goes on without the watch
            if _timed_out(exc):  # a quiet pause ends at the client's read timeout (or the server's)
                return False
            if getattr(exc, "status", None) == 410:  # the version expired: LIST again (after the gap)
                time.sleep(max(0.0, min(deadline, self.listed_at + MIN_LIST_GAP_S) - time.monotonic()))
                return True
            if refused(exc):
                self.refused = True
                log.warning(
                    "the cluster refuses to watch pods (%s); readiness is polled every %.0f s "
                    "instead (grant the 'watch' verb on pods, docs/kubernetes.md)",
                    _brief(exc),
                    timeout,
                )
            elif not self.failed_once:
                self.failed_once = True
                log.warning("watching pods failed (%s); this pause is slept instead", _brief(exc))
            time.sleep(max(0.0, deadline - time.monotonic()))
            return False
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def _changed(self, event: Mapping[str, Any], name: str) -> bool:
        """For a watch without a version: does this event differ from the pod's last read?"""
        kind = event.get("type")
        if kind == "ADDED":  # the current state, first: compare with the last LIST (or GET)
            version = str(event.get("object", {}).get("metadata", {}).get("resourceVersion"))
            return name in self.versions and self.versions[name] != version
        return kind in ("MODIFIED", "DELETED")


def _brief(exc: Exception) -> str:
    """``403 Forbidden`` for an API error (its str() holds the response headers and body)."""
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    return f"{status} {reason}" if status is not None else f"{type(exc).__name__}: {exc}"


def _timed_out(exc: BaseException | None) -> bool:
    """urllib3's ReadTimeoutError, also wrapped (a ProtocolError's argument, a cause), socket timeouts."""
    for _ in range(5):
        if exc is None:
            return False
        if any("Timeout" in cls.__name__ for cls in type(exc).__mro__):
            return True
        nested = [arg for arg in getattr(exc, "args", ()) if isinstance(arg, BaseException)]
        exc = nested[0] if nested else (exc.__cause__ or exc.__context__)
    return False


def _events(response: Any) -> Iterator[dict[str, Any]]:
    """The JSON lines of a watch response (no model deserialisation: many pods each poll)."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if buffer.strip():
        yield json.loads(buffer)


def watch_timeouts(timeout: float) -> dict[str, Any]:
    """The server ends the watch after ``timeoutSeconds`` (a whole number); the client's read
    timeout ends a shorter quiet pause."""
    return {"timeout_seconds": max(1, math.ceil(timeout)), "_request_timeout": (10.0, max(0.05, timeout))}
