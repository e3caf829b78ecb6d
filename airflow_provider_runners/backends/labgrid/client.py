"""A small synchronous client of the labgrid coordinator (gRPC, labgrid >= 25), for the ``labgrid`` backend.

Why not ``labgrid.remote.client.ClientSession``: it takes its owner name from the process-wide
``LG_HOSTNAME``/``LG_USERNAME`` variables (a triggerer waits for many reservations with
different owners at once), subscribes to every place and resource, and runs on its own event
loop. This client uses labgrid's generated stubs instead:

* read-only and owner-free calls (``GetPlaces``, ``GetReservations``, ``PollReservation``,
  ``CancelReservation``, ``ReleasePlace(fromuser=...)``, ``SetPlaceComment``) go over one
  plain channel;
* the two calls the coordinator attributes to an owner (``CreateReservation``,
  ``AcquirePlace``: it looks the owner up by the caller's connection) go through
  :meth:`CoordinatorClient.owner_session`, a short-lived channel on its *own* connection whose
  ``ClientStream`` announces the owner name first.

Every call is blocking with a deadline; the backend runs them in threads (the trigger's
poller calls ``status_many`` through ``asyncio.to_thread``), so the triggerer's event loop is
never blocked. ``calls`` counts coordinator RPCs (benchmarks).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_runners.exceptions import MissingExtraError, ProvisionError

DEFAULT_PORT = 20408
#: Reservation states, by the value labgrid's protobuf uses.
STATES = ("waiting", "allocated", "acquired", "expired", "invalid")
_CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),  # one connection per channel: the owner is per connection
    ("grpc.keepalive_time_ms", 7500),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class CoordinatorUnavailable(ProvisionError):
    """The coordinator did not answer (down, restarting, unreachable)."""


class CoordinatorRejected(ProvisionError):
    """The coordinator refused a call (unknown place, invalid filter, not the owner...); ``code``:
    the gRPC status code's name (``errors.py`` maps it)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def _grpc() -> tuple[Any, Any, Any]:
    try:
        import grpc
        from labgrid.remote.generated import (
            labgrid_coordinator_pb2 as pb2,
            labgrid_coordinator_pb2_grpc as pb2_grpc,
        )
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtraError("labgrid", "labgrid", "labgrid") from exc
    return grpc, pb2, pb2_grpc


@dataclass(frozen=True)
class PlaceInfo:
    name: str
    tags: dict[str, str]
    comment: str = ""
    acquired: str | None = None
    reservation: str | None = None
    matches: tuple[str, ...] = ()
    acquired_resources: tuple[str, ...] = ()

    def matches_filters(self, filters: Mapping[str, str]) -> bool:
        """labgrid's scheduler rule: every filter is one of the place's tags (``name`` = place name)."""
        tags = {**self.tags, "name": self.name}
        return all(tags.get(k) == v for k, v in filters.items())

    def holder(self) -> str:
        if self.acquired:
            return f"held by {self.acquired}"
        if self.reservation:
            return f"allocated to reservation {self.reservation}"
        return "free"


@dataclass(frozen=True)
class ReservationInfo:
    token: str
    owner: str
    state: str
    filters: dict[str, str] = field(default_factory=dict)
    place: str | None = None
    created: float = 0.0
    timeout: float = 0.0
    prio: float = 0.0


class CoordinatorClient:
    """Blocking calls to one coordinator (``host:port``); thread-safe; reconnects after errors."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout
        self.calls = 0
        self._lock = threading.Lock()
        self._channel: Any = None
        self._stub: Any = None

    def __repr__(self) -> str:
        return f"CoordinatorClient({self.address!r})"

    # -- plumbing ------------------------------------------------------------------------------
    def _stub_(self) -> Any:
        with self._lock:
            if self._stub is None:
                grpc, _, pb2_grpc = _grpc()
                self._channel = grpc.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
                self._stub = pb2_grpc.CoordinatorStub(self._channel)
            return self._stub

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stub = None

    def _call(self, method: str, request: Any, stub: Any = None) -> Any:
        grpc, _, _ = _grpc()
        self.calls += 1
        try:
            return getattr(stub or self._stub_(), method)(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                if stub is None:
                    self.close()  # a fresh channel reconnects at once when the coordinator is back
                raise CoordinatorUnavailable(
                    f"coordinator {self.address}: {code.name}: {exc.details()}"
                ) from None
            raise CoordinatorRejected(
                f"coordinator {self.address}: {method}: {exc.details()}", code=getattr(code, "name", "")
            ) from None

    @staticmethod
    def _code_is(exc: Exception, name: str) -> bool:
        return f": {name}" in str(exc) or "does not exist" in str(exc)

    # -- reads -------------------------------------------------------------------------------
    def places(self) -> list[PlaceInfo]:
        _, pb2, _ = _grpc()
        response = self._call("GetPlaces", pb2.GetPlacesRequest())
        return [
            PlaceInfo(
                name=p.name,
                tags=dict(p.tags),
                comment=p.comment,
                acquired=p.acquired or None,
                reservation=p.reservation if p.HasField("reservation") and p.reservation else None,
                matches=tuple(
                    f"{m.exporter}/{m.group}/{m.cls}" + (f"/{m.name}" if m.name else "") for m in p.matches
                ),
                acquired_resources=tuple(p.acquired_resources),
            )
            for p in response.places
        ]

    @staticmethod
    def _reservation(pb: Any) -> ReservationInfo:
        return ReservationInfo(
            token=pb.token,
            owner=pb.owner,
            state=STATES[pb.state] if 0 <= pb.state < len(STATES) else str(pb.state),
            filters=dict(pb.filters["main"].filter) if "main" in pb.filters else {},
            place=pb.allocations.get("main") or None,
            created=pb.created,
            timeout=pb.timeout,
            prio=pb.prio,
        )

    def reservations(self) -> list[ReservationInfo]:
        _, pb2, _ = _grpc()
        response = self._call("GetReservations", pb2.GetReservationsRequest())
        return [self._reservation(r) for r in response.reservations]

    def poll(self, token: str) -> ReservationInfo | None:
        """Refresh (keep alive) a reservation; None when it no longer exists."""
        _, pb2, _ = _grpc()
        try:
            response = self._call("PollReservation", pb2.PollReservationRequest(token=token))
        except CoordinatorRejected:
            return None
        return self._reservation(response.reservation)

    # -- owner-free changes ------------------------------------------------------------------
    def cancel(self, token: str) -> bool:
        """Cancel a reservation; False when it did not exist (idempotent)."""
        _, pb2, _ = _grpc()
        try:
            self._call("CancelReservation", pb2.CancelReservationRequest(token=token))
        except CoordinatorRejected:
            return False
        return True

    def release(self, place: str, owner: str) -> None:
        """Release ``place`` if ``owner`` holds it (a no-op otherwise: never kicks someone else)."""
        _, pb2, _ = _grpc()
        self._call("ReleasePlace", pb2.ReleasePlaceRequest(placename=place, fromuser=owner))

    def set_comment(self, place: str, comment: str) -> None:
        _, pb2, _ = _grpc()
        self._call("SetPlaceComment", pb2.SetPlaceCommentRequest(placename=place, comment=comment))

    # -- administration (the bench-coordinator helper, fixtures) --------------------------------
    def add_place(
        self, name: str, tags: Mapping[str, str] | None = None, matches: tuple[str, ...] = ()
    ) -> None:
        _, pb2, _ = _grpc()
        self._call("AddPlace", pb2.AddPlaceRequest(name=name))
        if tags:
            self._call("SetPlaceTags", pb2.SetPlaceTagsRequest(placename=name, tags=dict(tags)))
        for pattern in matches:
            self._call("AddPlaceMatch", pb2.AddPlaceMatchRequest(placename=name, pattern=pattern))

    def delete_place(self, name: str) -> None:
        _, pb2, _ = _grpc()
        self._call("DeletePlace", pb2.DeletePlaceRequest(name=name))

    # -- calls made as an owner -----------------------------------------------------------------
    @contextmanager
    def owner_session(self, owner: str) -> Iterator[OwnerSession]:
        """A connection registered with the coordinator as ``owner`` (``host/user``)."""
        grpc, pb2, pb2_grpc = _grpc()
        channel = grpc.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
        outbox: queue.Queue[Any] = queue.Queue()

        def requests() -> Iterator[Any]:
            while (msg := outbox.get()) is not None:
                yield msg

        startup = pb2.ClientInMessage()
        startup.startup.version = _labgrid_version()
        startup.startup.name = owner
        outbox.put(startup)
        sync = pb2.ClientInMessage()
        sync.sync.id = next(_SYNC_IDS)
        outbox.put(sync)
        stub = pb2_grpc.CoordinatorStub(channel)
        stream = stub.ClientStream(requests())
        try:
            self.calls += 1
            try:
                for out in stream:  # the sync answer means the startup (owner name) was processed
                    if out.HasField("sync") and out.sync.id == sync.sync.id:
                        break
            except grpc.RpcError as exc:
                raise CoordinatorUnavailable(
                    f"coordinator {self.address}: {exc.code().name}: {exc.details()}"
                ) from None
            yield OwnerSession(self, stub, owner)
        finally:
            outbox.put(None)
            stream.cancel()
            channel.close()


_SYNC_IDS = itertools.count(1)


def _labgrid_version() -> str:
    from labgrid.util import labgrid_version

    return str(labgrid_version())


class OwnerSession:
    """Calls the coordinator attributes to ``owner`` (see :meth:`CoordinatorClient.owner_session`)."""

    def __init__(self, client: CoordinatorClient, stub: Any, owner: str) -> None:
        self.client = client
        self.stub = stub
        self.owner = owner

    def create_reservation(self, filters: Mapping[str, str], prio: float = 0.0) -> ReservationInfo:
        _, pb2, _ = _grpc()
        request = pb2.CreateReservationRequest(
            filters={"main": pb2.Reservation.Filter(filter=dict(filters))}, prio=float(prio)
        )
        response = self.client._call("CreateReservation", request, stub=self.stub)
        return self.client._reservation(response.reservation)

    def acquire(self, place: str) -> None:
        _, pb2, _ = _grpc()
        self.client._call("AcquirePlace", pb2.AcquirePlaceRequest(placename=place), stub=self.stub)
