"""Setup task: :class:`ProvisionRunnerOperator`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_runners.backends.registry import DEFAULT_CONN_ID, check_spec, get_backend
from airflow_provider_runners.core.backend import Backend, ProvisionRequest, RunnerState, RunnerStatus
from airflow_provider_runners.core.catalog import ResolvedSpec, resolve_spec
from airflow_provider_runners.core.handles import FACTS_XCOM_KEY, HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.core.lifecycle import acquire
from airflow_provider_runners.core.lineage import Lineage, label_value
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.evidence.callbacks import add_evidence_callbacks
from airflow_provider_runners.exceptions import BudgetExceededError, ProvisionError, RunnerSpecError
from airflow_provider_runners.governance import budget

if TYPE_CHECKING:
    from airflow.sdk import Context

PROGRESS_EVERY_S = 30.0


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
    :param ready_timeout: how long to wait for readiness before giving up (and tearing down).
    :param catalog_path: a catalog file other than the configured one.
    :param budget_wait: when the runner would exceed a $/hour budget (``cost/budget.py``), wait
        up to this long (deferred, re-checking every ``budget_poll_interval``) for room instead
        of failing at once. Nothing is created while waiting.
    """

    template_fields = ("conn_id",)
    ui_color = "#d8f0e3"

    def __init__(
        self,
        *,
        spec: RunnerSpec | Mapping[str, Any],
        conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = True,
        ready_timeout: timedelta | float = timedelta(minutes=30),
        poll_interval: float | None = None,
        catalog_path: str | None = None,
        budget_wait: timedelta | float | None = None,
        budget_poll_interval: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = RunnerSpec.parse(spec)
        self.catalog_path = catalog_path
        self.resolved: ResolvedSpec = resolve_spec(
            self.spec, backend=self.spec.backend, catalog_path=catalog_path
        )
        check_spec(self.resolved)  # parse time: the options, by the backend(s) that can serve the spec
        self.conn_id = conn_id
        self.deferrable = deferrable
        self.ready_timeout = (
            ready_timeout if isinstance(ready_timeout, timedelta) else timedelta(seconds=ready_timeout)
        )
        self.poll_interval = poll_interval
        self.budget_wait = budget.as_timedelta(budget_wait)
        self.budget_poll_interval = budget_poll_interval
        self._held: tuple[Backend, RunnerHandle] | None = None
        add_evidence_callbacks(self, "provision")

    # -- run ---------------------------------------------------------------------------------
    def _labels(self, context: Context, lineage: Lineage, expires_at: datetime) -> dict[str, str]:
        tags = self.spec.tags
        labels = {
            **lineage.labels(),
            "tenant": tags.tenant,
            "pipeline": tags.pipeline or label_value(lineage.dag_id),
            "profile": label_value(self.spec.profile),
            "expires-at": str(int(expires_at.timestamp())),
            **tags.extra,
        }
        if tags.cost_center:
            labels["cost-center"] = tags.cost_center
        return labels

    def execute(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        lineage = Lineage.from_context(context)
        backend = get_backend(self.conn_id)
        if self.spec.backend is not None and self.spec.backend != backend.name:
            raise RunnerSpecError(
                f"spec.backend: {self.spec.backend!r}, but Connection {self.conn_id!r} selects backend "
                f"{backend.name!r}; nothing was created"
            )
        if self.spec.runner_class not in backend.runner_classes:
            raise RunnerSpecError(
                f"spec.runner_class: {self.spec.runner_class!r} is not served by backend {backend.name!r} "
                f"(Connection {self.conn_id!r}); it serves: {sorted(backend.runner_classes)}"
            )
        resolved = resolve_spec(self.spec, backend=backend.name, catalog_path=self.catalog_path)
        expires_at = datetime.now(UTC) + self.spec.ttl
        request = ProvisionRequest(
            resolved=resolved,
            lineage=lineage,
            attempt_token=lineage.attempt_token(ti.try_number),
            conn_id=self.conn_id,
            labels=self._labels(context, lineage, expires_at),
        )
        try:
            admission = budget.admit(backend, request, catalog_path=self.catalog_path)  # nothing created yet
        except BudgetExceededError as exc:
            ti.xcom_push(key=FACTS_XCOM_KEY, value=exc.details)
            if not budget.keep_waiting(ti, self.budget_wait, str(exc)):
                raise
            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            self.defer(
                trigger=TimeDeltaTrigger(timedelta(seconds=self.budget_poll_interval)),
                method_name="execute_after_budget_wait",
            )
        handle, acquisition = acquire(backend, request)
        nodes = int(handle.details.get("nodes") or 1)  # machines billed at the profile's price
        handle = handle.evolve(details={**_pricing(resolved, nodes), "acquisition": acquisition})
        self._held = (backend, handle)
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
        status = backend.status(handle)
        if status.state is RunnerState.READY:
            return self._finish(context, backend, _with_status(handle, status), acquisition)
        if status.state is not RunnerState.PENDING:
            self._fail(context, backend, handle, acquisition, f"{status.state.value}: {status.message}")
        deadline = datetime.now(UTC) + self.ready_timeout
        if self.deferrable:
            from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger

            self.defer(
                trigger=RunnerReadyTrigger(
                    conn_id=self.conn_id,
                    handle=handle.to_xcom(),
                    deadline=deadline.isoformat(),
                    poll_interval=self.poll_interval,
                ),
                method_name="execute_complete",
            )
        return self._wait_in_task(context, backend, handle, acquisition, deadline)

    def execute_after_budget_wait(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resumed after waiting for budget room: check again from the start."""
        return self.execute(context)

    def _wait_in_task(
        self, context: Context, backend: Backend, handle: RunnerHandle, acquisition: str, deadline: datetime
    ) -> dict[str, Any]:
        interval = self.poll_interval or backend.poll_interval
        started = last_progress = time.monotonic()
        while True:
            status = backend.status(handle)
            if status.state is RunnerState.READY:
                return self._finish(context, backend, _with_status(handle, status), acquisition)
            if status.state is not RunnerState.PENDING:
                self._fail(context, backend, handle, acquisition, f"{status.state.value}: {status.message}")
            if datetime.now(UTC) >= deadline:
                self._fail(context, backend, handle, acquisition, f"not ready within {self.ready_timeout}")
            if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                last_progress = time.monotonic()
                self.log.info(
                    "waiting for runner %s: %s (%.0fs)",
                    handle.resource_id,
                    status.message,
                    last_progress - started,
                )
            time.sleep(interval)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or "status" not in event or "handle" not in event:
            raise ProvisionError(f"runner readiness trigger returned an unexpected event: {event!r}")
        handle = RunnerHandle.from_xcom(event["handle"])
        acquisition = str(handle.details.get("acquisition", "created"))
        backend = get_backend(self.conn_id)
        self._held = (backend, handle)
        if event["status"] != "ready":
            self._fail(
                context, backend, handle, acquisition, f"{event['status']}: {event.get('message', '')}"
            )
        return self._finish(context, backend, handle, acquisition)

    def _finish(
        self, context: Context, backend: Backend, handle: RunnerHandle, acquisition: str
    ) -> dict[str, Any]:
        ready_in = (datetime.now(UTC) - handle.created_at).total_seconds()
        facts = {"acquisition": acquisition, "ready_in_s": round(ready_in, 3), **backend.describe(handle)}
        facts.update(self._governance())
        ti = context["ti"]
        ti.xcom_push(key=HANDLE_XCOM_KEY, value=handle.to_xcom())
        ti.xcom_push(key=FACTS_XCOM_KEY, value=facts)
        self.log.info("runner %s ready in %.1fs at %s", handle.resource_id, ready_in, handle.endpoints)
        self._held = None
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
        try:
            result = backend.teardown(handle)
            cleanup = {"torn_down": result.existed, "message": result.message}
        except Exception as exc:  # noqa: BLE001 - keep the original failure; the backstop ends the runner
            cleanup = {"torn_down": False, "message": f"teardown failed: {exc}"}
        else:
            budget.release(handle, f"provision failed: {why}"[:200])
        self._held = None
        context["ti"].xcom_push(
            key=FACTS_XCOM_KEY,
            value={"acquisition": acquisition, "failure": why, "cleanup": cleanup, **self._governance()},
        )
        raise ProvisionError(
            f"runner {handle.resource_id} did not become ready ({why}); cleanup: {cleanup['message']}"
        )

    def on_kill(self) -> None:
        if self._held is not None:
            backend, handle = self._held
            result = backend.teardown(handle)
            budget.release(handle, "provision killed")
            self.log.info("task killed: tore down runner %s (%s)", handle.resource_id, result.message)


def _with_status(handle: RunnerHandle, status: RunnerStatus) -> RunnerHandle:
    return handle.evolve(endpoints=dict(status.endpoints), details=dict(status.details))


def _pricing(resolved: ResolvedSpec, nodes: int = 1) -> dict[str, Any]:
    """Cost inputs for the handle. ``nodes``: how many machines of the profile the runner is (a
    Dataproc cluster is a master plus its workers), multiplying both price and vCPUs (the
    per-vCPU fee counts every node's vCPUs)."""
    profile = resolved.profile
    vcpus = profile.effective_vcpus
    return {
        "usd_per_hour": resolved.hourly_rate * nodes,
        "vcpus": (vcpus or 0) * nodes,
        "billing_minimum_s": resolved.billing.minimum_seconds,
        "billing_vcpu_fee": resolved.billing.per_vcpu_hour_fee,
        "spot": resolved.spec.spot,
    }
