"""Setup task: :class:`ProvisionRunnerOperator`."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_runners import templated_spec
from airflow_provider_runners.backends.registry import DEFAULT_CONN_ID, check_spec, get_backend
from airflow_provider_runners.core import metrics
from airflow_provider_runners.core.backend import Backend, ProvisionRequest, RunnerState, RunnerStatus, pause
from airflow_provider_runners.core.catalog import ResolvedSpec, resolve_spec
from airflow_provider_runners.core.handles import FACTS_XCOM_KEY, HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.core.lifecycle import acquire
from airflow_provider_runners.core.lineage import Lineage, label_value
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.core.waiting import ReadinessWait, Verdict, utc_now
from airflow_provider_runners.defaults import default_deferrable
from airflow_provider_runners.evidence.callbacks import add_evidence_callbacks
from airflow_provider_runners.exceptions import (
    BudgetExceededError,
    ConnectionConfigError,
    ProvisionError,
    RunnerSpecError,
)
from airflow_provider_runners.links import RUNNER_LINKS

if TYPE_CHECKING:
    from airflow.sdk import Context

PROGRESS_EVERY_S = 30.0
#: How long on_kill may spend ending the runner: Airflow's supervisor escalates SIGTERM to
#: SIGKILL after 5 s.
ON_KILL_BUDGET_S = 4.5


def _as_timedelta(value: timedelta | float | None) -> timedelta | None:
    """A duration argument (a timedelta or seconds) as a timedelta; None stays None."""
    if value is None or isinstance(value, timedelta):
        return value
    return timedelta(seconds=float(value))


def _backoff_multiplier() -> Any:
    """``retry_exponential_backoff`` meaning "double the delay each retry" on every Airflow we
    support: a float multiplier since Airflow 3.2 (``True`` would be a multiplier of 1 there),
    a bool before (a float is refused by 3.1's argument type check)."""
    try:
        from airflow.sdk.bases.operator import BASEOPERATOR_ARGS_EXPECTED_TYPES

        expected = BASEOPERATOR_ARGS_EXPECTED_TYPES.get("retry_exponential_backoff", bool)
    except ImportError:  # pragma: no cover - layout of another Airflow release
        return True
    types = expected if isinstance(expected, tuple) else (expected,)
    return 2.0 if float in types else True


#: Retry defaults of a provision (each applies unless given, also through ``default_args``).
#: A retry adopts the runner an earlier try made (``lifecycle.acquire``), so retrying is cheap —
#: and it is what keeps a run alive when Airflow fails a deferred task that its trigger had
#: already resumed (the executor's stale "success" from the process that exited on defer():
#: apache/airflow #66374, #71580).
PROVISION_RETRY_DEFAULTS: dict[str, Any] = {
    "retries": 3,
    "retry_delay": timedelta(seconds=10),
    "retry_exponential_backoff": _backoff_multiplier(),
    "max_retry_delay": timedelta(minutes=5),
}


class ProvisionRunnerOperator(BaseOperator):
    """Create (or adopt) a runner and wait until it is ready — the *setup* task of a runner.

    The spec is validated against the catalog in ``__init__``, i.e. when the DAG is parsed:
    a bad spec is a DAG import error and nothing is ever created.

    At run time it: finds a runner an earlier try of this task instance left behind (adopt
    if healthy, replace if broken), else creates one with this try's attempt token; pushes
    the handle to XCom (key ``runner_handle``) *before* waiting; then waits in the triggerer
    (``deferrable=True``) or in the task. If the runner fails or is not ready within
    ``ready_timeout``, it is torn down before the task fails. ``on_kill`` tears down too.

    Returns the ready handle (XCom ``return_value``), which work tasks take as ``handle=``.

    :param spec: a :class:`~airflow_provider_runners.core.specs.RunnerSpec` or a mapping of its fields.
    :param conn_id: the runner Connection; its conn_type selects the backend.
    :param deferrable: wait in the triggerer; None (default): ``[operators] default_deferrable``
        when the deployment sets it, else True (``defaults.py``).
    :param ready_timeout: how long to wait for readiness before giving up (and tearing down).
    :param catalog_path: a catalog file other than the configured one.
    :param budget_wait: when the runner would exceed a $/hour budget (``cost/budget.py``), wait
        up to this long (deferred, re-checking every ``budget_poll_interval``) for room instead
        of failing at once. Nothing is created while waiting.
    :param wait_before_defer: with ``deferrable=True``, first wait this long in the task (a fast
        runner — local_dask — is ready within seconds, and the task then never defers).
    :param min_deferral: once deferred, the trigger reports readiness no sooner than this many
        seconds after the deferral, so that Airflow has processed the exit of the deferring
        process before the task resumes (a resume that overtakes it is failed by the scheduler:
        apache/airflow #66374, #67287, #71580, #72716).

    Retries default to ``PROVISION_RETRY_DEFAULTS`` (3, from 10 s, doubling, at most 5 min).

    Whoever learns that the provision failed ends its runner (docs/architecture.md, "A failed
    provision leaves nothing behind"): this operator before it fails; ``on_kill`` — by the
    handle it knows or the lineage tag, at any point before it returned the handle; the
    trigger's ``on_kill``; the final failure callback (also when the dag-processor runs it);
    the teardown task (trigger rule ``all_done``); the reaper.
    """

    template_fields = ("conn_id", "spec_template")
    operator_extra_links = RUNNER_LINKS  # links.py: dashboard, console, pod, bench from the handle
    ui_color = "#d8f0e3"

    def __init__(
        self,
        *,
        spec: RunnerSpec | Mapping[str, Any],
        conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        ready_timeout: timedelta | float = timedelta(minutes=30),
        poll_interval: float | None = None,
        catalog_path: str | None = None,
        budget_wait: timedelta | float | None = None,
        budget_poll_interval: float = 60.0,
        wait_before_defer: timedelta | float = timedelta(seconds=20),
        min_deferral: float = 10.0,
        **kwargs: Any,
    ) -> None:
        defaults = kwargs.get("default_args") or {}
        for name, value in PROVISION_RETRY_DEFAULTS.items():
            if name not in kwargs and name not in defaults:
                kwargs[name] = value
        super().__init__(**kwargs)
        self.catalog_path = catalog_path
        # A spec with Jinja templates is checked when rendered (templated_spec.py), others now.
        self.spec_template = templated_spec.template_of(spec)
        self._spec_source = copy.deepcopy(self.spec_template)
        self.spec: RunnerSpec
        self.resolved: ResolvedSpec
        if self.spec_template is None:
            self.spec = RunnerSpec.parse(spec)
            self.resolved = resolve_spec(self.spec, backend=self.spec.backend, catalog_path=catalog_path)
            check_spec(self.resolved)  # parse time: the options, by the backend(s) that can serve the spec
        self.conn_id = conn_id
        self.deferrable = default_deferrable(True) if deferrable is None else deferrable
        self.ready_timeout = (
            ready_timeout if isinstance(ready_timeout, timedelta) else timedelta(seconds=ready_timeout)
        )
        self.poll_interval = poll_interval
        self.budget_wait = _as_timedelta(budget_wait)
        self.budget_poll_interval = budget_poll_interval
        self.wait_before_defer = _as_timedelta(wait_before_defer) or timedelta(0)
        self.min_deferral = float(min_deferral)
        #: The clock of the wait in the task (``core/waiting.py``; tests inject one).
        self.clock: Callable[[], datetime] = utc_now
        self._held: tuple[Backend, RunnerHandle] | None = None
        # What on_kill needs, gathered while nothing blocks (on_kill runs in a signal handler,
        # where asking Airflow for a Connection or an XCom could deadlock).
        self._backend: Backend | None = None
        self._who: dict[str, Any] | None = None
        self._done = False
        self._killed = False
        add_evidence_callbacks(self, "provision")

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        if self.spec_template is not None and self._spec_source is not None:
            self.spec, self.resolved = templated_spec.parse_rendered(
                self.spec_template, self._spec_source, self.catalog_path
            )

    # -- run ---------------------------------------------------------------------------------
    def _labels(self, context: Context, lineage: Lineage) -> dict[str, str]:
        tags = self.spec.tags
        labels = {
            **lineage.labels(),
            "tenant": tags.tenant,
            "pipeline": tags.pipeline or label_value(lineage.dag_id),
            "profile": label_value(self.spec.profile),
            **tags.extra,
        }
        if tags.cost_center:
            labels["cost-center"] = tags.cost_center
        return labels

    def _remember(self, context: Context, backend: Backend, lineage: Lineage) -> None:
        ti = context["ti"]
        self._backend = backend
        self._done = self._killed = False  # a fresh start (dag.test() reuses the operator)
        self._who = {
            "dag_id": lineage.dag_id,
            "run_id": lineage.run_id,
            "task_id": lineage.task_id,
            "map_index": lineage.map_index,
            "try_number": getattr(ti, "try_number", None),
            "lineage_key": lineage.key,
        }

    def execute(self, context: Context) -> dict[str, Any]:
        return self.provision(context)

    def provision(self, context: Context) -> dict[str, Any]:
        """What ``execute`` does; also called by a work task that owns its runner
        (``operators/owned.py``), where this operator is not a task of its own."""
        ti = context["ti"]
        lineage = Lineage.from_context(context)
        try:
            backend = get_backend(self.conn_id)
        except ConnectionConfigError as exc:  # a malformed or invalid Connection: no retry reads it better
            raise _final(exc) from None
        if self.spec.backend is not None and self.spec.backend != backend.name:
            raise _final(
                RunnerSpecError(
                    f"spec.backend: {self.spec.backend!r}, but Connection {self.conn_id!r} selects backend "
                    f"{backend.name!r}; nothing was created"
                )
            )
        self._remember(context, backend, lineage)
        if (ti.try_number or 1) > 1:
            metrics.retry(backend.name, self.spec.profile)  # docs/metrics.md
        if self.spec.runner_class not in backend.runner_classes:
            raise _final(
                RunnerSpecError(
                    f"spec.runner_class: {self.spec.runner_class!r} is not served by backend {backend.name!r} "
                    f"(Connection {self.conn_id!r}); it serves: {sorted(backend.runner_classes)}"
                )
            )
        resolved = resolve_spec(self.spec, backend=backend.name, catalog_path=self.catalog_path)
        if (idle_error := backend.idle_timeout_error(self.spec)) is not None:  # the Connection's backend
            raise _final(RunnerSpecError(f"{idle_error} (Connection {self.conn_id!r}); nothing was created"))
        request = ProvisionRequest.build(  # expires_at = now + ttl, once, for the backend and its tags
            resolved,
            lineage,
            attempt_token=lineage.attempt_token(ti.try_number),
            conn_id=self.conn_id,
            labels=self._labels(context, lineage),
        )
        from airflow_provider_runners.governance import budget  # the live-runner index: not at parse time

        try:
            admission = budget.admit(backend, request, catalog_path=self.catalog_path)  # nothing created yet
        except BudgetExceededError as exc:
            metrics.provision(backend.name, self.spec.profile, "refused", None)  # docs/metrics.md
            ti.xcom_push(key=FACTS_XCOM_KEY, value=exc.details)
            if not budget.keep_waiting(ti, self.budget_wait, str(exc)):
                raise _final(exc) from None  # a retry would be refused alike: budget_wait waits
            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            self.defer(
                trigger=TimeDeltaTrigger(timedelta(seconds=self.budget_poll_interval)),
                method_name="execute_after_budget_wait",
            )
        handle, acquisition = acquire(backend, request)  # priced (handle.pricing)
        handle = handle.evolve(details={"acquisition": acquisition})
        self._held = (backend, handle)  # from here on, on_kill ends it
        ti.xcom_push(key=HANDLE_XCOM_KEY, value=handle.to_xcom())  # before any wait
        admission.confirm(handle)  # registry: running, with its resource id, rate and expiry
        self.log.info(
            "runner %s %s on %s (profile %s, expires %s)",
            handle.resource_id,
            acquisition,
            backend.name,
            handle.profile,
            handle.expires_at.isoformat(),
        )
        deadline = self.clock() + self.ready_timeout
        if self.deferrable:
            # A fast runner is ready within seconds: wait for it here and never defer (a fast
            # trigger is what loses the race with the executor's stale event, see min_deferral).
            until = min(deadline, self.clock() + self.wait_before_defer)  # polls at least once
            ready = self._wait_in_task(context, backend, handle, acquisition, deadline, until=until)
            if ready is not None:
                return ready
            from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger

            not_before = datetime.now(UTC) + timedelta(seconds=self.min_deferral)
            self.defer(
                trigger=RunnerReadyTrigger(
                    conn_id=self.conn_id,
                    handle=handle.to_xcom(),
                    deadline=deadline.isoformat(),
                    poll_interval=self.poll_interval,
                    not_before=not_before.isoformat(),
                    provision_ti=self._who,
                ),
                method_name="execute_complete",
            )
        result = self._wait_in_task(context, backend, handle, acquisition, deadline)
        assert result is not None  # without `until`, it returns only when ready (or raises)
        return result

    def execute_after_budget_wait(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resumed after waiting for budget room: check again from the start."""
        return self.provision(context)

    def _wait_in_task(
        self,
        context: Context,
        backend: Backend,
        handle: RunnerHandle,
        acquisition: str,
        deadline: datetime,
        until: datetime | None = None,
    ) -> dict[str, Any] | None:
        """Poll until ready (return the handle), broken or past ``deadline`` (fail), or past
        ``until`` (return None: the caller defers; checked after the first poll). What a status or
        a failed status call means is decided by ``core/waiting.py``, as in the trigger: a
        transient error keeps waiting (up to ``MAX_TRANSIENT_ERRORS`` in a row), a permanent one fails."""
        interval = self.poll_interval or backend.poll_interval
        started = last_progress = time.monotonic()
        from airflow_provider_runners.governance.heartbeat import Heartbeat  # not at parse time

        pulse = Heartbeat(handle.lineage_key)  # this task holds the runner while it waits
        wait = ReadinessWait(deadline, backend.classify_error, clock=self.clock)
        while True:
            status: RunnerStatus | None = None
            try:
                status = backend.status(handle)
            except Exception as exc:  # noqa: BLE001 - classified by the backend's error map
                decision = wait.on_error(exc)
            else:
                decision = wait.on_status(status)
            if decision.verdict is Verdict.READY and status is not None:
                return self._finish(context, backend, _with_status(handle, status), acquisition)
            if decision.final:
                self._fail(context, backend, handle, acquisition, decision.message)
            if until is not None and self.clock() >= until:
                return None
            if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                last_progress = time.monotonic()
                self.log.info(
                    "waiting for runner %s: %s (%.0fs)",
                    handle.resource_id,
                    decision.message,
                    last_progress - started,
                )
            pulse.maybe()
            pause(backend, [handle], interval)  # or sooner, by the runner's own signal

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or "status" not in event or "handle" not in event:
            raise ProvisionError(f"runner readiness trigger returned an unexpected event: {event!r}")
        handle = RunnerHandle.from_xcom(event["handle"])
        acquisition = str(handle.details.get("acquisition", "created"))
        backend = get_backend(self.conn_id)
        self._held = (backend, handle)
        self._remember(context, backend, Lineage.from_context(context))
        if event["status"] != "ready":
            self._fail(
                context, backend, handle, acquisition, f"{event['status']}: {event.get('message', '')}"
            )
        # The event may be old (a triggerer restart, a slow resume): the runner may have been
        # ended meanwhile (a kill, the failure callback of a try Airflow failed, the reaper).
        # Never report a runner ready that is not.
        status = backend.status(handle)
        if status.state is not RunnerState.READY:
            self._fail(
                context,
                backend,
                handle,
                acquisition,
                f"ready when the trigger fired, {status.state.value} when the task resumed: {status.message}",
            )
        return self._finish(context, backend, handle, acquisition)

    def _finish(
        self, context: Context, backend: Backend, handle: RunnerHandle, acquisition: str
    ) -> dict[str, Any]:
        if self._killed:
            raise ProvisionError(
                f"runner {handle.resource_id}: the task was killed while it waited; torn down"
            )
        ready_in = (datetime.now(UTC) - handle.created_at).total_seconds()
        facts = {"acquisition": acquisition, "ready_in_s": round(ready_in, 3), **backend.describe(handle)}
        facts.update(self._governance())
        ti = context["ti"]
        ti.xcom_push(key=HANDLE_XCOM_KEY, value=handle.to_xcom())
        ti.xcom_push(key=FACTS_XCOM_KEY, value=facts)
        self.log.info("runner %s ready in %.1fs at %s", handle.resource_id, ready_in, handle.endpoints)
        metrics.provision(backend.name, self.spec.profile, "ready", ready_in)  # docs/metrics.md
        self._held = None
        self._done = True  # the runner is the DAG's now: the teardown task ends it
        return handle.to_xcom()

    def _governance(self) -> dict[str, Any]:
        r = self.resolved
        return {
            "spec": self.spec.model_dump(mode="json"),
            "image": {"ref": self.spec.image, "digest": r.image.digest if r.image else None},
            "network_profile": {"name": r.network_profile_name, "kind": r.network_profile.kind}
            if r.network_profile
            else None,
            "driver_bundles": {ref: b.sha256 for ref, b in r.driver_bundles.items()},
        }

    def _fail(
        self, context: Context, backend: Backend, handle: RunnerHandle, acquisition: str, why: str
    ) -> None:
        """Tear down what was provisioned (it may bill), record why, and fail the task."""
        from airflow_provider_runners.governance.ending import teardown_retrying

        try:
            result = teardown_retrying(backend, handle)  # transient errors retried, NOT_FOUND is gone
            cleanup = {"torn_down": result.existed, "message": result.message}
        except Exception as exc:  # noqa: BLE001 - keep the original failure; the backstop ends the runner
            cleanup = {"torn_down": False, "message": f"teardown failed: {exc}"}
        else:
            from airflow_provider_runners.governance import budget

            budget.release(handle, f"provision failed: {why}"[:200])
        self._held = None
        ready_in = (datetime.now(UTC) - handle.created_at).total_seconds()
        metrics.provision(backend.name, self.spec.profile, "failed", ready_in)  # docs/metrics.md
        context["ti"].xcom_push(
            key=FACTS_XCOM_KEY,
            value={"acquisition": acquisition, "failure": why, "cleanup": cleanup, **self._governance()},
        )
        raise ProvisionError(
            f"runner {handle.resource_id} did not become ready ({why}); cleanup: {cleanup['message']}"
        )

    def on_kill(self) -> None:
        """The task is being killed (marked failed / success, cleared, its DAG run stopped, or
        Airflow failed it while it ran): end every runner of this task instance — the one this
        process holds, and any other still carrying the lineage tag (an earlier try's, or one
        created just before the handle was known) — and record the end. Does nothing once the
        provision has returned its handle (the runner is then the work's and the teardown's).
        Bounded by ``ON_KILL_BUDGET_S``: Airflow escalates to SIGKILL soon after."""
        if self._done:
            return
        self._killed = True
        backend = self._backend or (self._held[0] if self._held else None)
        handle = self._held[1] if self._held else None
        if backend is None:
            self.log.warning(
                "task killed before it knew its backend: nothing to end here (the teardown "
                "task and the reaper find the runner by its lineage tag)"
            )
            return
        who = self._who or {"lineage_key": None}
        run_bounded(
            lambda: _end_and_record(backend, handle, who, "provision on_kill"), ON_KILL_BUDGET_S, self.log
        )


def _end_and_record(backend: Backend, handle: RunnerHandle | None, who: dict[str, Any], by: str) -> None:
    from airflow_provider_runners.evidence.callbacks import record_end, record_killed_provision
    from airflow_provider_runners.governance.ending import end_runners

    results = end_runners(backend, [handle], who["lineage_key"], "provision killed")
    if results and who.get("dag_id"):
        record_killed_provision(  # its callbacks may not run for a task killed from outside
            dag_id=who["dag_id"],
            run_id=who["run_id"],
            lineage_key=who["lineage_key"],
            provision_task_id=who["task_id"],
            handle=handle,
            noticed_by=by,
            map_index=who["map_index"],
            try_number=who["try_number"],
        )
        record_end(
            dag_id=who["dag_id"],
            run_id=who["run_id"],
            lineage_key=who["lineage_key"],
            by=by,
            reason="the provision task was killed",
            results=results,
            task_id=who["task_id"],
            map_index=who["map_index"],
            try_number=who["try_number"],
            handle=handle,
        )


def run_bounded(work: Callable[[], object], timeout: float, log: Any) -> None:
    """Run ``work`` in a thread for at most ``timeout`` seconds (it goes on while the process
    lives). A signal handler must not block on a lock the interrupted code may hold."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=run, name="runner-on-kill", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        log.warning("on_kill: ending the runner takes longer than %.1fs; the reaper finishes it", timeout)
    for exc in errors:
        log.error("on_kill: could not end the runner: %s", exc)


def _final(exc: BaseException) -> BaseException:
    """``exc`` as an error Airflow does not retry (same class name, message and attributes):
    for refusals a retry would meet again — a budget with no room, a runner class the backend
    does not serve."""
    try:
        from airflow.sdk.exceptions import AirflowFailException
    except ImportError:  # pragma: no cover - Airflow 3.1 without it in the Task SDK
        from airflow.exceptions import AirflowFailException  # type: ignore[no-redef]
    cls = type(exc)
    final_cls: type[BaseException] = type(
        cls.__name__, (cls, AirflowFailException), {"__module__": cls.__module__}
    )
    final = BaseException.__new__(final_cls)
    final.__dict__.update(exc.__dict__)
    final.args = exc.args
    return final.with_traceback(exc.__traceback__)


def _with_status(handle: RunnerHandle, status: RunnerStatus) -> RunnerHandle:
    return handle.evolve(endpoints=dict(status.endpoints), details=dict(status.details))
