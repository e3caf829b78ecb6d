"""What the sensors poll, batched through :class:`~airflow_provider_runners.triggers.poller.SharedStatusPoller`.

A source is the sensor-side twin of a backend's ``status_many``: one call per poll interval
answers every waiter of the same account in a triggerer, so 500 sensors waiting for benches on
one coordinator cost one ``GetPlaces`` per tick, not 500. Sources only *read*; nothing here
creates, reserves or changes anything, so a trigger built on them is safe to run twice.

* :class:`BenchInventorySource` — the benches of a labgrid coordinator (``GetPlaces``) or an
  HTTP bench platform (``GET /benches``), with who holds each: :class:`BenchInfo`.
* :class:`LineageSource` — ``backend.find(lineage_key)``: the runner another task provisioned.
* :class:`QueueDepthSource` — SQS ``ApproximateNumberOfMessages`` through the Amazon provider's
  ``SqsHook`` (as ``operators/burst.py`` reads it), one call per queue per tick.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_runners.exceptions import RunnerSpecError

BENCH_BACKENDS = ("labgrid", "bench_http")


@dataclass(frozen=True)
class Probe:
    """One question a waiter asks a source; waiters asking the same ``resource_id`` share the answer."""

    resource_id: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchInfo:
    """A bench as its platform reports it. ``free``: nobody holds it and nothing is allocated to it."""

    name: str
    tags: Mapping[str, str]
    free: bool
    holder: str

    def matches(self, place: str | None, tags: Mapping[str, str]) -> bool:
        """labgrid's rule, also used for HTTP benches: the name (if given) and every tag match."""
        return (place is None or self.name == place) and all(self.tags.get(k) == v for k, v in tags.items())


def bench_inventory(backend: Any) -> list[BenchInfo]:
    """Every bench of a ``labgrid`` or ``bench_http`` backend, read without reserving anything."""
    if backend.name == "labgrid":
        return [
            BenchInfo(p.name, dict(p.tags), free=not p.acquired and not p.reservation, holder=p.holder())
            for p in backend.client.places()
        ]
    if backend.name == "bench_http":
        _, out = backend._request("GET", "/benches")  # the backend's session: token, retries, errors
        return [
            BenchInfo(
                str(b["id"]),
                dict(b.get("tags") or {}),
                free=b.get("state") == "free",
                holder=f"held by {b['owner']}" if b.get("owner") else str(b.get("state")),
            )
            for b in out.get("benches", [])
        ]
    raise RunnerSpecError(
        f"Connection {backend.conn_id!r} is a {backend.name!r} backend; bench sensors need one of "
        f"{list(BENCH_BACKENDS)} (conn types runners_labgrid, runners_bench_http)"
    )


class BenchInventorySource:
    """The bench list of one platform, read once per tick for every waiting bench sensor."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.poll_interval = backend.poll_interval

    def batch_key(self) -> str:
        return f"bench-inventory:{self.backend.batch_key()}"

    def classify_error(self, exc: BaseException) -> Any:
        """The backend's error map decides (``core/errors.py``)."""
        return self.backend.classify_error(exc)

    def status_many(self, probes: Iterable[Probe]) -> dict[str, list[BenchInfo]]:
        inventory = bench_inventory(self.backend)
        return {probe.resource_id: inventory for probe in probes}


class LineageSource:
    """``backend.find(lineage_key)`` for every sensor waiting for a runner provisioned elsewhere."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.poll_interval = backend.poll_interval

    def batch_key(self) -> str:
        return f"lineage:{self.backend.batch_key()}"

    def classify_error(self, exc: BaseException) -> Any:
        """The backend's error map decides (``core/errors.py``)."""
        return self.backend.classify_error(exc)

    def status_many(self, probes: Iterable[Probe]) -> dict[str, Any]:
        return {probe.resource_id: self.backend.find(probe.resource_id) for probe in probes}


def read_queue_depth(queue_url: str, aws_conn_id: str | None, client: Any = None) -> int:
    """SQS ``ApproximateNumberOfMessages`` of ``queue_url`` (the Amazon provider's ``SqsHook``)."""
    if client is None:
        from airflow.providers.amazon.aws.hooks.sqs import SqsHook

        client = SqsHook(aws_conn_id=aws_conn_id).get_conn()
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


class QueueDepthSource:
    """Queue depths of one AWS Connection: one ``GetQueueAttributes`` per queue per tick."""

    def __init__(self, aws_conn_id: str | None, poll_interval: float) -> None:
        self.aws_conn_id = aws_conn_id
        self.poll_interval = poll_interval
        self._client: Any = None

    def batch_key(self) -> str:
        return f"sqs-depth:{self.aws_conn_id}"

    def status_many(self, probes: Iterable[Probe]) -> dict[str, int]:
        if self._client is None:
            from airflow.providers.amazon.aws.hooks.sqs import SqsHook

            self._client = SqsHook(aws_conn_id=self.aws_conn_id).get_conn()
        return {
            p.resource_id: read_queue_depth(p.resource_id, self.aws_conn_id, self._client) for p in probes
        }
