"""``labgrid``: reserve, acquire and release hardware benches on a labgrid coordinator (conn type ``runners_labgrid``).

Benches exist; this backend never creates one (docs/benches.md). A bench is a
labgrid *place*; a spec selects one by tag filters or by name (``spec.options``, see
:func:`~airflow_provider_runners.core.bench_options.parse_bench_options`).

**Lifecycle**

1. ``create``: checks that some place matches the filters (else a clear error naming the
   filters and the benches there are; nothing is created), then creates a labgrid
   *reservation* owned by ``<owner_host>/<lineage key>`` and returns at once.
2. While the provision task is deferred, the trigger's shared poller calls ``status_many``:
   one ``GetReservations`` + one ``GetPlaces`` per tick for every waiter, and a
   ``PollReservation`` per waiting reservation every ``keepalive_s`` — that poll is what keeps
   the reservation alive (labgrid expires a reservation ~60 s after its last poll).
3. When the coordinator allocates a place, the same status call *acquires* it as the owner,
   writes a lease marker into the place's comment and checks readiness: the health command
   if one is given (run on the worker/triggerer host with ``LG_PLACE`` etc. exported; exit
   0 = ready), else the place's resources (every resource match acquired; a place without
   matches, i.e. without an exporter, is ready once acquired).
4. ``teardown``: cancels the reservation, releases the place (only if this owner holds it),
   removes the lease marker, and reads back that nothing is held any more. Idempotent.

A retry of the provision task finds its reservation (or acquired place) by the owner name —
the lineage key — and adopts it, keeping its place in the queue. The HIL command of
``RunnerCommandOperator`` runs on the Airflow worker with ``LG_COORDINATOR``, ``LG_PLACE``,
``LG_TOKEN`` and ``LG_HOSTNAME``/``LG_USERNAME`` (the owner) exported, so ``labgrid-client -p
$LG_PLACE ...`` inside it acts as the holder of the bench.

**Backstops.** A reservation nobody polls expires on the coordinator after ~60 s. An acquired
place never expires in labgrid: its lease marker carries ``expires=<epoch>`` (the spec's ttl)
and ``airflow-runners reap`` releases places past it (``list_managed``).

**Connection**: host and port of the coordinator (default port 20408). Extras (optional):
``owner_host`` (first half of the owner name, default ``airflow``), ``poll_interval_s`` (2: how
often waiters look; the hand-over latency), ``keepalive_s`` (15),
``health_command`` (default health check for every spec), ``health_timeout_s`` (60),
``coordinator_down_timeout_s`` (300: fail the wait after the coordinator was unreachable that
long), ``rpc_timeout_s`` (10).

**Manual cleanup**::

    labgrid-client -x HOST:PORT reservations                  # owner airflow/rl... = ours
    labgrid-client -x HOST:PORT cancel-reservation TOKEN
    labgrid-client -x HOST:PORT who                           # places held by airflow/rl...
    labgrid-client -x HOST:PORT -p PLACE release --kick       # release someone else's place
    labgrid-client -x HOST:PORT -p PLACE set-comment '...'    # drop a stale [runners-lease ...]
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel

from airflow_provider_runners.backends.labgrid.client import (
    DEFAULT_PORT,
    CoordinatorClient,
    CoordinatorRejected,
    CoordinatorUnavailable,
    PlaceInfo,
    ReservationInfo,
)
from airflow_provider_runners.backends.labgrid.errors import LABGRID_ERRORS
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
from airflow_provider_runners.core.bench_options import BenchOptions, BenchSelector, selector_for
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.secret_refs import LOCAL_KINDS
from airflow_provider_runners.exceptions import ConnectionConfigError, ProvisionError, RunnerCommandError

LEASE_RE = re.compile(
    r"\s*\[runners-lease owner=(?P<owner>\S+) expires=(?P<expires>\d+) acquired=(?P<acquired>[\d.]+)\]"
)
LIVE_STATES = frozenset({"waiting", "allocated", "acquired"})
ADOPTED_TTL = timedelta(hours=2)


def _filters(selector: BenchSelector) -> dict[str, str]:
    filters = dict(selector.tags)
    if selector.place:
        filters["name"] = selector.place
    return filters


def _fmt(filters: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(filters.items())) or "(no filters)"


def _parse_filters(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


class LabgridBackend(Backend):
    """Benches as labgrid places. Lifecycle, backstops, extras and cleanup: see the module docstring."""

    name = "labgrid"
    conn_type = "runners_labgrid"
    hook_name = "Runners: labgrid bench"
    hidden_fields: ClassVar[tuple[str, ...]] = ("login", "schema", "password")
    relabeling: ClassVar[Mapping[str, str]] = {"host": "Coordinator host", "port": "Coordinator port (20408)"}
    placeholders: ClassVar[Mapping[str, str]] = {"host": "labgrid-coordinator", "port": "20408"}
    conn_fields: ClassVar[Mapping[str, ConnField]] = {
        "owner_host": ConnField(
            "Owner host", "The host name reservations are made for.", placeholder="airflow"
        ),
        "keepalive_s": ConnField("Keep-alive (s)", type="number", default=15.0),
        "health_command": ConnField("Health command", placeholder="labgrid-client -p $LG_PLACE power get"),
    }
    runner_classes: ClassVar[frozenset[str]] = frozenset({"bench"})
    options_model: ClassVar[type[BaseModel] | None] = BenchOptions
    error_map = (
        LABGRID_ERRORS  # errors.py: coordinator unavailable transient, NOT_FOUND gone, rejected permanent
    )
    poll_interval = 2.0
    idle_timeout_unsupported: ClassVar[str | None] = (
        "a bench reservation has no idle signal; its lease expiry (the ttl) ends it"
    )
    secret_ref_kinds: ClassVar[frozenset[str]] = LOCAL_KINDS

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        extra = config.extra
        self.address = f"{config.host or '127.0.0.1'}:{config.port or DEFAULT_PORT}"
        self.owner_host = str(extra.get("owner_host") or "airflow")
        if "/" in self.owner_host or not self.owner_host.strip():
            raise ConnectionConfigError(
                f"Connection {config.conn_id!r} extra owner_host: {self.owner_host!r} must not contain '/'"
            )
        self.keepalive_s = float(extra.get("keepalive_s", 15.0))
        if extra.get("poll_interval_s"):  # how often waiters are polled (handover latency)
            setattr(self, "poll_interval", float(extra["poll_interval_s"]))  # noqa: B010 - ClassVar default
        self.health_command: str | None = extra.get("health_command") or None
        self.health_timeout_s = float(extra.get("health_timeout_s", 60.0))
        self.down_timeout_s = float(extra.get("coordinator_down_timeout_s", 300.0))
        self.client = CoordinatorClient(self.address, timeout=float(extra.get("rpc_timeout_s", 10.0)))
        self._lock = threading.Lock()
        self._refreshed: dict[str, float] = {}  # token -> monotonic time of our last PollReservation
        self._holders: dict[str, set[str]] = {}  # owner -> who held the matching benches while it waited
        self._down_since: float | None = None
        self._lost_in_outage: set[str] = set()  # owners waiting when the coordinator went away

    def batch_key(self) -> str:
        return f"{self.name}:{self.address}"

    def owner_for(self, lineage_key: str) -> str:
        return f"{self.owner_host}/{lineage_key}"

    # -- create / find -------------------------------------------------------------------------
    def create(self, request: ProvisionRequest) -> RunnerHandle:
        spec = request.resolved.spec
        selector = selector_for(spec.options, request.resolved.profile.options)
        filters = _filters(selector)
        owner = self.owner_for(request.lineage.key)
        places = self.client.places()
        matching = [p for p in places if p.matches_filters(filters)]
        if not matching:
            raise ProvisionError(
                f"no bench on labgrid coordinator {self.address} matches filters {_fmt(filters)}; "
                f"benches there: {self._inventory(places)}"
            )
        if not selector.queue and not any(p.acquired is None and p.reservation is None for p in matching):
            raise ProvisionError(
                f"every bench matching {_fmt(filters)} is busy and spec.options.queue is false: "
                + "; ".join(f"{p.name} {p.holder()}" for p in matching)
            )
        with self.client.owner_session(owner) as session:
            reservation = session.create_reservation(filters, selector.priority)
        self._refreshed[reservation.token] = time.monotonic()
        now = datetime.now(UTC)
        return RunnerHandle(
            backend=self.name,
            runner_class="bench",
            resource_id=f"lg-{request.lineage.key}",
            conn_id=request.conn_id,
            lineage_key=request.lineage.key,
            attempt_token=request.attempt_token,
            created_at=now,
            expires_at=request.expires_at,
            environment=request.resolved.environment,
            profile=spec.profile,
            tags=request.resource_labels(),
            pricing=request.pricing(),
            endpoints={"coordinator": self.address},
            details={
                "coordinator": self.address,
                "owner": owner,
                "reservation": reservation.token,
                "filters": _fmt(filters),
                "readiness": selector.readiness,
                "health_command": selector.health_command,
                "place": reservation.place if reservation.state == "acquired" else None,
            },
        )

    def find(self, lineage_key: str) -> RunnerHandle | None:
        owner = self.owner_for(lineage_key)
        mine = [r for r in self.client.reservations() if r.owner == owner and r.state in LIVE_STATES]
        held = [p for p in self.client.places() if p.acquired == owner]
        if not mine and not held:
            return None
        reservation = mine[0] if mine else None
        lease = self._lease(held[0]) if held else None
        created = datetime.fromtimestamp(reservation.created, UTC) if reservation else datetime.now(UTC)
        expires = datetime.fromtimestamp(int(lease["expires"]), UTC) if lease else created + ADOPTED_TTL
        return RunnerHandle(
            backend=self.name,
            runner_class="bench",
            resource_id=f"lg-{lineage_key}",
            conn_id=self.conn_id,
            lineage_key=lineage_key,
            attempt_token=f"{lineage_key}-found",
            created_at=created,
            expires_at=expires,
            environment="unknown",
            profile="unknown",
            endpoints={"coordinator": self.address},
            details={
                "coordinator": self.address,
                "owner": owner,
                "reservation": reservation.token if reservation else None,
                "filters": _fmt(reservation.filters) if reservation else "",
                "readiness": "auto",
                "health_command": None,
                "place": held[0].name if held else None,
            },
        )

    # -- status ----------------------------------------------------------------------------------
    def status(self, handle: RunnerHandle) -> RunnerStatus:
        return self.status_many([handle])[handle.resource_id]

    def status_many(self, handles: Iterable[RunnerHandle]) -> dict[str, RunnerStatus]:
        handles = list(handles)
        try:
            reservations = self.client.reservations()
            places = self.client.places()
        except CoordinatorUnavailable as exc:
            return self._unreachable(handles, exc)
        self._down_since = None
        return {h.resource_id: self._status_one(h, reservations, places) for h in handles}

    def _unreachable(self, handles: list[RunnerHandle], exc: Exception) -> dict[str, RunnerStatus]:
        now = time.monotonic()
        self._down_since = self._down_since or now
        down = now - self._down_since
        self._lost_in_outage.update(str(h.details.get("owner")) for h in handles)
        if down > self.down_timeout_s:
            state, what = (
                RunnerState.FAILED,
                f"coordinator unreachable for {down:.0f}s (> {self.down_timeout_s:.0f}s)",
            )
        else:
            state, what = RunnerState.PENDING, f"coordinator unreachable for {down:.0f}s, still waiting"
        return {h.resource_id: RunnerStatus(state, f"{what}: {exc}") for h in handles}

    def _status_one(
        self, handle: RunnerHandle, reservations: list[ReservationInfo], places: list[PlaceInfo]
    ) -> RunnerStatus:
        owner = str(handle.details["owner"])
        filters = _parse_filters(str(handle.details.get("filters") or ""))
        mine = [r for r in reservations if r.owner == owner]
        held = next((p for p in places if p.acquired == owner), None)
        reservation = next(
            (r for r in mine if r.token == handle.details.get("reservation")), mine[0] if mine else None
        )
        if held is not None:
            return self._ready(handle, held, reservation)
        if reservation is None:
            if owner in self._lost_in_outage and filters:
                return self._recreate(handle, owner, filters, places)
            return RunnerStatus(
                RunnerState.GONE,
                f"reservation {handle.details.get('reservation')} of {owner} no longer exists on {self.address} "
                "(cancelled, expired, or the coordinator restarted)",
            )
        self._lost_in_outage.discard(owner)
        if reservation.state in ("expired", "invalid"):
            return RunnerStatus(
                RunnerState.FAILED,
                f"reservation {reservation.token} is {reservation.state} "
                + ("(not polled in time)" if reservation.state == "expired" else "(its place was deleted)"),
            )
        matching = [p for p in places if p.matches_filters(reservation.filters or filters)]
        if not matching:
            return RunnerStatus(
                RunnerState.FAILED,
                f"no bench on {self.address} matches filters {_fmt(reservation.filters)} any more; "
                f"benches there: {self._inventory(places)}",
            )
        if reservation.state == "allocated" and reservation.place:
            return self._acquire(handle, reservation, places)
        return self._waiting(handle, reservation, matching, reservations)

    def _waiting(
        self,
        handle: RunnerHandle,
        reservation: ReservationInfo,
        matching: list[PlaceInfo],
        reservations: list[ReservationInfo],
    ) -> RunnerStatus:
        last = self._refreshed.get(reservation.token)
        if last is None or time.monotonic() - last >= self.keepalive_s:
            polled = self.client.poll(reservation.token)  # keeps the reservation alive
            self._refreshed[reservation.token] = time.monotonic()
            if polled is not None and polled.state == "allocated" and polled.place:
                return self._acquire(handle, polled, self.client.places())
        owners = {r.token: r.owner for r in reservations}
        busy = []
        for place in matching:
            who = place.acquired or (
                owners.get(place.reservation or "") and f"reservation of {owners[place.reservation or '']}"
            )
            busy.append(f"{place.name} " + (f"held by {who}" if who else "free"))
            if who:
                self._holders.setdefault(reservation.owner, set()).add(f"{place.name}:{who}")
        waited = time.time() - reservation.created
        return RunnerStatus(
            RunnerState.PENDING,
            f"reservation {reservation.token} waiting {waited:.0f}s for a bench matching "
            f"{_fmt(reservation.filters)}: {'; '.join(busy)}",
            details={"reservation": reservation.token},
        )

    def _recreate(
        self, handle: RunnerHandle, owner: str, filters: dict[str, str], places: list[PlaceInfo]
    ) -> RunnerStatus:
        """The coordinator lost our waiting reservation in an outage (restart): queue again."""
        self._lost_in_outage.discard(owner)
        if not any(p.matches_filters(filters) for p in places):
            return RunnerStatus(
                RunnerState.FAILED, f"after a coordinator outage no bench matches {_fmt(filters)}"
            )
        with self.client.owner_session(owner) as session:
            reservation = session.create_reservation(filters)
        self._refreshed[reservation.token] = time.monotonic()
        return RunnerStatus(
            RunnerState.PENDING,
            f"reservation {handle.details.get('token')} was lost in a coordinator outage; "
            f"queued again as {reservation.token}",
            details={"reservation": reservation.token},
        )

    def _acquire(
        self, handle: RunnerHandle, reservation: ReservationInfo, places: list[PlaceInfo]
    ) -> RunnerStatus:
        owner = reservation.owner
        try:
            with self.client.owner_session(owner) as session:
                session.acquire(str(reservation.place))
        except CoordinatorRejected as exc:
            return RunnerStatus(RunnerState.PENDING, f"allocated {reservation.place}, acquire refused: {exc}")
        place = next((p for p in self.client.places() if p.name == reservation.place), None)
        if place is None or place.acquired != owner:
            return RunnerStatus(RunnerState.PENDING, f"allocated {reservation.place}, not yet held")
        acquired_at = time.time()
        marker = f"[runners-lease owner={owner} expires={int(handle.expires_at.timestamp())} acquired={acquired_at:.3f}]"
        self.client.set_comment(place.name, (LEASE_RE.sub("", place.comment) + " " + marker).strip())
        return self._ready(handle, place, reservation, acquired_at=acquired_at)

    def _ready(
        self,
        handle: RunnerHandle,
        place: PlaceInfo,
        reservation: ReservationInfo | None,
        acquired_at: float | None = None,
    ) -> RunnerStatus:
        lease = self._lease(place)
        if acquired_at is None:
            acquired_at = float(lease["acquired"]) if lease else time.time()
        readiness = str(handle.details.get("readiness") or "auto")
        health = handle.details.get("health_command") or self.health_command
        checked, outcome = "none", "not checked"
        if readiness in ("auto", "health") and health:
            ok, outcome = run_health_command(
                str(health), self.bench_env(handle, place.name), self.health_timeout_s
            )
            checked = "health_command"
            if not ok:
                return RunnerStatus(
                    RunnerState.FAILED,
                    f"bench {place.name} acquired but its health command failed: {outcome}",
                )
        elif readiness in ("auto", "resources"):
            checked = "resources"
            missing = [m for m in place.matches if not any(_match(m, r) for r in place.acquired_resources)]
            if missing:
                return RunnerStatus(
                    RunnerState.PENDING,
                    f"bench {place.name} acquired; waiting for resources {missing} (exporter offline?)",
                )
            outcome = f"{len(place.acquired_resources)} resource(s) acquired"
        created = reservation.created if reservation else acquired_at
        holders = sorted(self._holders.pop(place.acquired or "", set()))
        return RunnerStatus(
            RunnerState.READY,
            f"bench {place.name} held by {place.acquired} ({outcome})",
            endpoints={"coordinator": self.address, "place": place.name},
            details={
                "place": place.name,
                "reservation": reservation.token if reservation else handle.details.get("reservation"),
                "place_tags": json.dumps(place.tags, sort_keys=True),
                "resources": ",".join(place.acquired_resources),
                "exporters": ",".join(sorted({r.split("/")[0] for r in place.acquired_resources})),
                "acquired_at": round(acquired_at, 3),
                "waited_s": round(max(0.0, acquired_at - created), 3),
                "waited_behind": "; ".join(holders),
                "readiness_checked": checked,
                "readiness_result": outcome[:300],
            },
        )

    # -- teardown ---------------------------------------------------------------------------------
    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        owner = str(handle.details.get("owner") or self.owner_for(handle.lineage_key))
        cancelled = [
            r.token for r in self.client.reservations() if r.owner == owner and self.client.cancel(r.token)
        ]
        released, hold = [], None
        for place in self.client.places():
            lease = self._lease(place)
            if place.acquired == owner:
                self.client.release(place.name, owner)  # after the cancel: the next waiter gets it at once
                released.append(place.name)
                if lease:
                    hold = round(time.time() - float(lease["acquired"]), 3)
            if lease and lease["owner"] == owner:
                self.client.set_comment(place.name, LEASE_RE.sub("", place.comment).strip())
        for token in cancelled:
            self._refreshed.pop(token, None)
        still_held = [p.name for p in self.client.places() if p.acquired == owner]
        still_reserved = [
            r.token for r in self.client.reservations() if r.owner == owner and r.state in LIVE_STATES
        ]
        if still_held or still_reserved:
            raise ProvisionError(
                f"release of {owner} not confirmed: still holds {still_held}, reservations {still_reserved}"
            )
        existed = bool(cancelled or released)
        return TeardownResult(
            existed=existed,
            message=(
                f"released {released or 'no place'}, cancelled {cancelled or 'no reservation'}"
                if existed
                else "already released"
            ),
            details={
                "owner": owner,
                "released_places": ",".join(released),
                "cancelled_reservations": ",".join(cancelled),
                "hold_s": hold,
                "released_at": datetime.now(UTC).isoformat(),
                "release_confirmed": True,
            },
        )

    # -- evidence, inventory -----------------------------------------------------------------------
    def describe(self, handle: RunnerHandle) -> dict[str, Any]:
        d = handle.details
        return {
            "coordinator": self.address,
            "bench": d.get("place"),
            "place_tags": json.loads(str(d["place_tags"])) if d.get("place_tags") else {},
            "filters": d.get("filters"),
            "reservation": d.get("reservation"),
            "held_by": d.get("owner"),
            "exporters": d.get("exporters"),
            "resources": d.get("resources"),
            "waited_s": d.get("waited_s"),
            "waited_behind": d.get("waited_behind"),
            "acquired_at": d.get("acquired_at"),
            "readiness": {"checked": d.get("readiness_checked"), "result": d.get("readiness_result")},
            "labgrid_version": _labgrid_version(),
        }

    def probe(self) -> str:
        """ "Test Connection": one places query to the coordinator (``rpc_timeout_s``)."""
        return f"coordinator {self.address} reachable; {len(self.client.places())} place(s)"

    def list_managed(self) -> list[RunnerHandle]:
        found = []
        prefix = f"{self.owner_host}/"
        owners = {p.acquired for p in self.client.places() if p.acquired and p.acquired.startswith(prefix)}
        owners |= {
            r.owner
            for r in self.client.reservations()
            if r.owner.startswith(prefix) and r.state in LIVE_STATES
        }
        for owner in sorted(owners):
            handle = self.find(owner.split("/", 1)[1])
            if handle is not None:
                found.append(handle)
        return found

    @staticmethod
    def _lease(place: PlaceInfo) -> dict[str, str] | None:
        match = LEASE_RE.search(place.comment)
        return match.groupdict() if match else None

    @staticmethod
    def _inventory(places: list[PlaceInfo]) -> str:
        return "; ".join(f"{p.name} ({_fmt(p.tags)}, {p.holder()})" for p in places) or "none"

    # -- commands ---------------------------------------------------------------------------------
    def bench_env(self, handle: RunnerHandle, place: str) -> dict[str, str]:
        """What a HIL command needs to use the bench (no secrets)."""
        owner = str(handle.details.get("owner") or self.owner_for(handle.lineage_key))
        host, _, user = owner.partition("/")
        return {
            "LG_COORDINATOR": self.address,
            "LG_PLACE": place,
            "LG_TOKEN": str(handle.details.get("reservation") or ""),
            "LG_HOSTNAME": host,
            "LG_USERNAME": user,
            "RUNNER_BENCH": place,
        }

    def run_command(
        self, handle: RunnerHandle, request: CommandRequest, output: OutputSink, cancel: threading.Event
    ) -> CommandResult:
        place_name = str(handle.details.get("place") or handle.endpoints.get("place") or "")
        owner = str(handle.details.get("owner"))
        place = next((p for p in self.client.places() if p.name == place_name), None)
        if place is None or place.acquired != owner:
            raise RunnerCommandError(
                f"bench {place_name or '?'} is not held by {owner} any more "
                f"({place.holder() if place else 'no such place'}); not running {request.name}"
            )
        result = run_bench_command(request, output, cancel, self.bench_env(handle, place_name))
        return CommandResult(
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            cancelled=result.cancelled,
            details={**result.details, "bench": place_name, "coordinator": self.address},
        )


def _match(pattern: str, resource: str) -> bool:
    from fnmatch import fnmatchcase

    want, have = pattern.split("/"), resource.split("/")
    return all(fnmatchcase(h, w) for w, h in zip(want, have, strict=False))


def _labgrid_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("labgrid")
    except Exception:  # noqa: BLE001 - evidence only
        return None
