"""The one small interface every backend implements (a strategy per backend; docs/architecture.md).

A backend knows how to, for one kind of compute:

======================  ====================================================================
``create(request)``     start creating a runner; return its handle at once (no waiting)
``find(lineage_key)``   the live runner an earlier try of the same task instance made, if any
``status(handle)``      PENDING / READY / FAILED / GONE, cheap enough to poll
``status_many``         the same for many handles in one call (triggers share it; override
                        to batch API calls, e.g. one DescribeInstances for 1000 waits)
``teardown(handle)``    end it; idempotent: a runner that is already gone is success
``describe(handle)``    facts for the evidence ledger (identity, versions, digests, network)
``list_managed()``      every live runner this backend manages (for the reaper and budgets)
``run_command``         optional: run a command on the runner, streaming its output
                        (``RunnerCommandOperator``); overriding it is the :class:`RunsCommands`
                        capability (``supports_commands`` follows); ``stale()`` is
                        :class:`DetectsStale` (the reaper removes what dead runners left);
                        ``wait_for_change`` is :class:`WaitsForChange` (react to the
                        runner's own readiness signal instead of sleeping a poll interval)
``classify_error``      what an exception of its API means: TRANSIENT / PERMANENT / NOT_FOUND,
                        by its ``error_map`` (``core/errors.py``; one map per backend, in its
                        own package); waits, the poller and teardown act on it
``idle_timeout_...``    ``idle_timeout_unsupported``: None when the backend ends a runner
                        idle for ``spec.idle_timeout``, else why not (specs with one are then
                        refused at parse time: :meth:`Backend.check_idle_timeout`)
======================  ====================================================================

Adopt-or-replace on retry, pushing the handle to XCom before waiting, deferral, evidence
and cost are done once, by the operators, for every backend. A third-party backend is a
subclass registered under the entry-point group ``airflow_provider_runners.backends``.
"""

from __future__ import annotations

import enum
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from airflow_provider_runners.core.errors import DEFAULT_ERROR_MAP, ErrorKind, ErrorMap

if TYPE_CHECKING:
    from datetime import timedelta

    from pydantic import BaseModel

    from airflow_provider_runners.core.catalog import ResolvedSpec
    from airflow_provider_runners.core.handles import RunnerHandle, RunnerPricing
    from airflow_provider_runners.core.lineage import Lineage


class RunnerState(enum.StrEnum):
    PENDING = "pending"  # being created / starting: keep waiting
    READY = "ready"  # usable
    FAILED = "failed"  # broken: a retry replaces it; it may still exist and bill
    GONE = "gone"  # does not exist (never made, torn down, or ended by its backstop)


@dataclass(frozen=True)
class RunnerStatus:
    state: RunnerState
    message: str = ""
    #: Endpoints learned while starting (e.g. the scheduler address), merged into the handle.
    endpoints: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_healthy(self) -> bool:
        """Worth adopting on retry: it exists and is not broken."""
        return self.state in (RunnerState.PENDING, RunnerState.READY)


@dataclass(frozen=True)
class TeardownResult:
    existed: bool
    message: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


#: Tag / label on every runner resource: the spec's ``idle_timeout`` in seconds, ``none`` without
#: one. Backends that enforce it on the resource read it there (the EC2 host's idle watcher).
IDLE_TIMEOUT_TAG = "idle-timeout"


def idle_timeout_label(value: timedelta | None) -> str:
    """``timedelta(minutes=10)`` -> ``"600"``; None -> ``"none"`` (label-safe either way)."""
    return str(max(1, int(value.total_seconds()))) if value is not None else "none"


def idle_timeout_seconds(tags: Mapping[str, str]) -> float | None:
    """The idle timeout a resource's :data:`IDLE_TIMEOUT_TAG` carries, None when it has none."""
    value = tags.get(IDLE_TIMEOUT_TAG, "none")
    return float(value) if value.isdigit() and int(value) > 0 else None


@dataclass(frozen=True)
class ProvisionRequest:
    """Everything a backend needs to create a runner. No secrets: those come from the Connection.

    ``expires_at`` is the runner's backstop, computed once by whoever builds the request (the
    provision operator, the job array, tests: :meth:`build`); backends use it as it is, for the
    handle, their own timers and the ``expires-at`` tag of :meth:`resource_labels`."""

    resolved: ResolvedSpec
    lineage: Lineage
    attempt_token: str
    conn_id: str
    #: The provision task's labels (tenant, pipeline, cost-center, the spec's tags, ...).
    labels: Mapping[str, str]
    expires_at: datetime

    @classmethod
    def build(
        cls,
        resolved: ResolvedSpec,
        lineage: Lineage,
        attempt_token: str,
        conn_id: str,
        labels: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> ProvisionRequest:
        """A request whose runner ends ``spec.ttl`` after ``now`` (default: the current time)."""
        start = datetime.now(UTC) if now is None else now
        return cls(resolved, lineage, attempt_token, conn_id, dict(labels or {}), start + resolved.spec.ttl)

    @property
    def spec(self) -> Any:
        return self.resolved.spec

    def pricing(self, nodes: int = 1, spot_nodes: int | None = None) -> RunnerPricing:
        """The handle's :class:`RunnerPricing` for a runner of ``nodes`` machines of the profile
        (``spot_nodes`` of them at the spot price; None: as the spec asks)."""
        from airflow_provider_runners.core.prices import runner_pricing

        return runner_pricing(self.resolved, nodes, spot_nodes)

    def resource_labels(self) -> dict[str, str]:
        """The final tags / labels of every resource the runner creates: the lineage and profile
        (defaults), the provision task's labels (tenant, pipeline, ...), then ours, which win:
        ``expires-at`` (from :attr:`expires_at`, whole seconds), managed-by, environment, idle timeout."""
        from airflow_provider_runners.core.lineage import MANAGED_BY

        return {
            **self.lineage.labels(),
            "profile": self.spec.profile.lower(),
            **self.labels,
            "expires-at": str(int(self.expires_at.timestamp())),
            "managed-by": MANAGED_BY,
            "runner-env": self.resolved.environment,
            IDLE_TIMEOUT_TAG: idle_timeout_label(self.spec.idle_timeout),
        }


@dataclass(frozen=True)
class CommandRequest:
    """A command for :meth:`Backend.run_command`. No secret values: only references to them.

    ``command`` is either a shell script (``str``, run by ``/bin/sh -c`` or the backend's
    shell) or an argv tuple. ``secret_env`` maps an environment variable to a secret
    *reference* (see :mod:`airflow_provider_runners.core.secret_refs`), resolved at run time where
    the command runs; a backend refuses reference kinds it cannot resolve without exposing the
    value (``Backend.secret_ref_kinds``).
    """

    command: str | tuple[str, ...]
    #: Unique per task try: ``<attempt_token>-<task_id>[-<map_index>]``; tag remote commands with it.
    name: str
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict)
    #: Seconds; when it passes the backend cancels the command and returns ``timed_out=True``.
    timeout: float = 3600.0
    workdir: str | None = None


@dataclass(frozen=True)
class CommandResult:
    """How a command ended. ``exit_code`` is None when it never finished (timed out, cancelled)."""

    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False
    #: Non-secret facts for the evidence ledger (remote command id, host, times, ...).
    details: Mapping[str, Any] = field(default_factory=dict)


#: Receives each line of a command's output (stdout and stderr, merged) as it arrives.
OutputSink = Callable[[str], None]


#: The standard fields of an Airflow Connection form.
STANDARD_FIELDS = ("host", "port", "login", "schema", "password")


@dataclass(frozen=True)
class ConnField:
    """One extra field of a backend's Connection form (Airflow 3 ``conn-fields``). Its value is
    stored in the Connection's ``extra`` under the field's name; ``type`` is a JSON schema type."""

    label: str
    description: str = ""
    type: str = "string"
    #: Shown pre-filled in the form; must equal what the backend assumes when the field is absent.
    default: Any = None
    placeholder: str | None = None
    secret: bool = False

    def provider_info(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": [self.type, "null"]}
        if self.default is not None:
            schema["default"] = self.default
        if self.secret:
            schema["format"] = "password"
        return {"label": self.label, "description": self.description, "schema": schema}


@dataclass
class ConnectionConfig:
    """The parts of an Airflow Connection a backend reads. ``password`` is the only secret slot;
    secret values in ``extra`` must be listed by the backend in ``secret_extra_fields``."""

    conn_id: str
    conn_type: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@runtime_checkable
class RunsCommands(Protocol):
    """Optional capability: runs commands on its runners (``RunnerCommandOperator``;
    docs/commands.md). A backend has it when it overrides :meth:`Backend.run_command`."""

    secret_ref_kinds: ClassVar[frozenset[str]]

    def run_command(
        self, handle: RunnerHandle, request: CommandRequest, output: OutputSink, cancel: threading.Event
    ) -> CommandResult: ...


@runtime_checkable
class DetectsStale(Protocol):
    """Optional capability: finds runners whose state outlived them (a daemon that died), so the
    reaper removes what they left (docs/cost.md, reaper)."""

    def stale(self) -> list[RunnerHandle]: ...


@runtime_checkable
class WaitsForChange(Protocol):
    """Optional capability: blocks until one of ``handles`` may have changed state, by the runner's
    own signal (local_dask: a FIFO its daemon writes), or ``timeout`` seconds; True when signalled.
    Waits use it instead of sleeping the poll interval (docs/benchmarks.md, readiness)."""

    def wait_for_change(self, handles: Iterable[Any], timeout: float) -> bool: ...


def pause(backend: object, handles: Iterable[RunnerHandle], timeout: float) -> None:
    """Between two status polls: the backend's :class:`WaitsForChange`, else sleep ``timeout``."""
    if isinstance(backend, WaitsForChange):
        backend.wait_for_change(handles, timeout)
    else:
        time.sleep(timeout)


def runs_commands(backend: Backend | type[Backend]) -> bool:
    """True when ``backend`` implements :meth:`Backend.run_command` (the :class:`RunsCommands`
    capability); the base class only refuses."""
    cls = backend if isinstance(backend, type) else type(backend)
    return cls.run_command is not Backend.run_command


class Backend(ABC):
    """Base class of every backend. Subclasses set the class attributes and the abstract methods."""

    #: Short name used in handles, evidence and the catalog's ``billing`` section.
    name: ClassVar[str]
    #: Airflow Connection type that selects this backend (``runners_<name>``).
    conn_type: ClassVar[str]
    #: Human name shown in the Connection form.
    hook_name: ClassVar[str]
    #: Connection form: standard fields the backend does not read, their labels and placeholders
    #: (``extra`` included), and the extras shown as their own fields. Provider info's
    #: ``connection-types`` and the hook classes are generated from these (``connection_type_info``).
    hidden_fields: ClassVar[tuple[str, ...]] = STANDARD_FIELDS
    relabeling: ClassVar[Mapping[str, str]] = {}
    placeholders: ClassVar[Mapping[str, str]] = {}
    conn_fields: ClassVar[Mapping[str, ConnField]] = {}
    #: Runner classes this backend can provide.
    runner_classes: ClassVar[frozenset[str]]
    #: Seconds between status polls while waiting for readiness.
    poll_interval: ClassVar[float] = 5.0
    #: Extra fields whose values are secrets (masked in logs, never copied anywhere).
    secret_extra_fields: ClassVar[frozenset[str]] = frozenset()
    #: True when :meth:`run_command` is implemented (``RunnerCommandOperator`` can use it); set
    #: from the class itself (:func:`runs_commands`), no need to set it by hand.
    supports_commands: ClassVar[bool] = False
    #: Secret reference kinds ``run_command`` can resolve without exposing the value
    #: (see :mod:`airflow_provider_runners.core.secret_refs`).
    secret_ref_kinds: ClassVar[frozenset[str]] = frozenset()

    #: Why this backend cannot enforce ``spec.idle_timeout`` (a spec with one is refused at parse
    #: time, :meth:`check_idle_timeout`); None when it ends its runners after that long idle.
    #: A backend must opt in: the default refuses, so no idle_timeout is ever silently ignored.
    idle_timeout_unsupported: ClassVar[str | None] = "it does not enforce idle_timeout"

    #: The ``spec.options`` this backend accepts (a pydantic model, ``extra="forbid"``); None: any.
    options_model: ClassVar[type[BaseModel] | None] = None

    #: What its API's exceptions mean (``core/errors.py``); set one from the backend's package.
    error_map: ClassVar[ErrorMap] = DEFAULT_ERROR_MAP

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.supports_commands = runs_commands(cls)

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config

    @classmethod
    def check_options(cls, resolved: ResolvedSpec) -> None:
        """Validate ``spec.options`` against :attr:`options_model`; a RunnerSpecError names the field,
        the value and what is allowed. Runs when the DAG is parsed (docs/architecture.md)."""
        if cls.options_model is None:
            return
        from pydantic import ValidationError

        from airflow_provider_runners.core.specs import format_validation_error
        from airflow_provider_runners.exceptions import RunnerSpecError

        try:
            cls.options_model.model_validate(dict(resolved.spec.options))
        except ValidationError as exc:
            allowed = sorted(cls.options_model.model_fields)
            raise RunnerSpecError(
                f"{format_validation_error(exc, 'spec.options')} (backend {cls.name!r}; allowed options: {allowed})"
            ) from None

    @classmethod
    def check_spec(cls, resolved: ResolvedSpec) -> None:
        """Every parse-time check of a spec named for this backend (``spec.backend``): the options
        model, then anything deeper a backend adds by overriding (templates, profile fit, ...).
        Must not read a Connection or call an API: it runs in the DAG processor."""
        cls.check_options(resolved)
        cls.check_idle_timeout(resolved.spec)

    @classmethod
    def idle_timeout_error(cls, spec: Any) -> str | None:
        """The refusal of ``spec.idle_timeout`` by this backend (field, value, backend, why, what
        to do), or None when the spec has none or the backend enforces it (docs/cost.md)."""
        if spec.idle_timeout is None or cls.idle_timeout_unsupported is None:
            return None
        from airflow_provider_runners.core.specs import human_duration

        return (
            f"spec.idle_timeout: {human_duration(spec.idle_timeout)} is not enforced by backend {cls.name!r}: "
            f"{cls.idle_timeout_unsupported}; allowed: no idle_timeout (the ttl ends the runner), or a "
            "backend that enforces it (docs/cost.md, 'Idle timeout')"
        )

    @classmethod
    def check_idle_timeout(cls, spec: Any) -> None:
        """Refuse a ``spec.idle_timeout`` this backend would ignore (RunnerSpecError, nothing created)."""
        error = cls.idle_timeout_error(spec)
        if error is not None:
            from airflow_provider_runners.exceptions import RunnerSpecError

            raise RunnerSpecError(error)

    @classmethod
    def hook_class_name(cls) -> str:
        """The hook generated for this backend (:mod:`airflow_provider_runners.hooks.runner`)."""
        return f"airflow_provider_runners.hooks.runner.{cls.__name__.removesuffix('Backend')}RunnerHook"

    @classmethod
    def connection_type_info(cls) -> dict[str, Any]:
        """This backend's entry in provider info's ``connection-types`` (Airflow 3 form metadata)."""
        info: dict[str, Any] = {
            "connection-type": cls.conn_type,
            "hook-class-name": cls.hook_class_name(),
            "hook-name": cls.hook_name,
            "ui-field-behaviour": {
                "hidden-fields": list(cls.hidden_fields),
                "relabeling": dict(cls.relabeling),
                "placeholders": {
                    **dict(cls.placeholders),
                    **{name: f.placeholder for name, f in cls.conn_fields.items() if f.placeholder},
                },
            },
        }
        if cls.conn_fields:
            info["conn-fields"] = {name: f.provider_info() for name, f in cls.conn_fields.items()}
        return info

    @classmethod
    def classify_error(cls, exc: BaseException) -> ErrorKind:
        """TRANSIENT (retry, keep waiting), PERMANENT (fail with this message) or NOT_FOUND (the
        runner is gone) for an exception raised by this backend's calls (:attr:`error_map`)."""
        return cls.error_map.classify(exc)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(conn_id={self.config.conn_id!r})"

    @property
    def conn_id(self) -> str:
        return self.config.conn_id

    def billed_nodes(self, resolved: ResolvedSpec) -> int:
        """How many machines at the profile's price a runner of ``resolved`` is (the budget guard
        prices a runner before it exists). Override when a runner is several machines."""
        return 1

    def batch_key(self) -> str:
        """Triggers whose backends share this key share one status poller (one API account/region)."""
        return f"{self.name}:{self.conn_id}"

    def probe(self) -> str:
        """One cheap call that needs the backend's endpoint and credentials; returns what it saw.

        For :meth:`check_connection`. The default lists the managed runners (one list call on
        every built-in backend: DescribeInstances with tag filters, Dataproc clusters.list, pods
        by label, the coordinator's places, ``GET /reservations``, the local state dir). Override
        with something cheaper; raise on failure. Creates nothing."""
        return f"reachable; {len(self.list_managed())} live runner(s)"

    def check_connection(self) -> tuple[bool, str]:
        """``(ok, message)`` for Airflow's "Test Connection" (the hooks' ``test_connection``):
        :meth:`probe`, never raising; the message names the Connection and has no secret."""
        from airflow_provider_runners.core.redact import redact_text

        try:
            seen = self.probe()
        except Exception as exc:  # noqa: BLE001 - the answer is the message, not a traceback
            return False, redact_text(f"{self.name} Connection {self.conn_id!r}: {type(exc).__name__}: {exc}")
        return True, redact_text(f"{self.name} Connection {self.conn_id!r}: {seen}")

    @abstractmethod
    def create(self, request: ProvisionRequest) -> RunnerHandle:
        """Start creating a runner and return its handle without waiting for readiness."""

    @abstractmethod
    def find(self, lineage_key: str) -> RunnerHandle | None:
        """The runner tagged with ``lineage_key`` that still exists, if any."""

    @abstractmethod
    def status(self, handle: RunnerHandle) -> RunnerStatus:
        """Current state; must be cheap and must not raise for a runner that is gone."""

    def status_many(self, handles: Iterable[RunnerHandle]) -> dict[str, RunnerStatus]:
        """Status of many runners, keyed by resource_id. Override to batch API calls."""
        return {handle.resource_id: self.status(handle) for handle in handles}

    @abstractmethod
    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        """End the runner and wait until it is gone. Idempotent: already gone is success."""

    @abstractmethod
    def describe(self, handle: RunnerHandle) -> dict[str, Any]:
        """Facts for the evidence ledger. Must not contain secrets."""

    @abstractmethod
    def list_managed(self) -> list[RunnerHandle]:
        """Every live runner this backend manages (tagged managed-by airflow-provider-runners)."""

    def run_command(
        self,
        handle: RunnerHandle,
        request: CommandRequest,
        output: OutputSink,
        cancel: threading.Event,
    ) -> CommandResult:
        """Run ``request`` on the runner until it ends, calling ``output(line)`` as lines arrive.

        Must check ``cancel`` at least once a second and, when it is set, stop the remote
        command and return ``cancelled=True``; on ``request.timeout`` stop it and return
        ``timed_out=True``. Never log or return secret values.
        """
        raise NotImplementedError(
            f"the {self.name!r} backend does not run commands; RunnerCommandOperator needs a backend "
            "with supports_commands (docs/commands.md lists them)"
        )
