"""Sensors that wait for compute without borrowing it.

* :class:`BenchAvailableSensor` — until a bench matching tags (or a named bench) is free on a
  labgrid coordinator or an HTTP bench platform. It reserves nothing: use it to start a suite
  only when its bench is likely to be had at once (``runner(...)`` still queues for it).
* :class:`RunnerReadySensor` — until a runner another task or DAG provisions (by its handle or
  its lineage) is ready; returns the ready handle, so work can use it (``handle=sensor.output``).
  It never creates, adopts or tears down that runner.
* :class:`RunnerQueueDepthSensor` — until a work queue (SQS, or a callable) holds at least
  ``min_messages`` jobs: the trigger of the burst DAG (``dags/queue_burst.py``).

All are deferrable (``deferrable`` defaults to ``[operators] default_deferrable`` when the
deployment sets it, else ``True``: docs/architecture.md). Deferred, they wait in the triggerer on
a source shared through the batched poller (``triggers/poller.py``, ``triggers/sources.py``):
one API call per tick for every sensor and provision of the same account. Not deferred, they
poke like any sensor (``poke_interval``, ``mode="reschedule"``). They create nothing, so there
is nothing to clean up by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from airflow_provider_runners.backends.registry import get_backend
from airflow_provider_runners.core.bench_options import parse_bench_options
from airflow_provider_runners.defaults import default_deferrable

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger


class _RunnersSensor(BaseSensorOperator):
    """Deferrable sensor skeleton: check once in the task, then defer to ``_trigger`` with the
    sensor's ``timeout`` as the trigger's deadline; ``_check`` is also the ``poke``."""

    ui_color = "#f3ead7"

    def __init__(self, *, deferrable: bool | None = None, poll_interval: float | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.deferrable = default_deferrable(True) if deferrable is None else deferrable
        self.poll_interval = poll_interval

    def _check(self, context: Context) -> PokeReturnValue:
        raise NotImplementedError

    def _trigger(self, context: Context, deadline: str) -> BaseTrigger:
        raise NotImplementedError

    def poke(self, context: Context) -> PokeReturnValue:
        return self._check(context)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self._check(context)
        if first.is_done:
            return first.xcom_value
        deadline = (datetime.now(UTC) + timedelta(seconds=self.timeout)).isoformat()
        self.defer(trigger=self._trigger(context, deadline), method_name="execute_complete")

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        event = event or {}
        status = event.get("status")
        self.log.info("%s", event.get("message", ""))
        if status == "timeout":
            raise AirflowSensorTimeout(f"{self.task_id}: timed out: {event.get('message', '')}")
        if status != "done":
            raise AirflowFailException(f"{self.task_id}: {event.get('message') or event!r}")
        return self._result(event)

    def _result(self, event: dict[str, Any]) -> Any:
        raise NotImplementedError


class BenchAvailableSensor(_RunnersSensor):
    """Wait until ``min_free`` benches matching ``tags`` (and ``place``, a bench name) are free.

    Free = nobody holds it and no reservation is allocated to it. Reserves nothing. Returns the
    free matching bench names. Fails at once when no bench matches at all (naming the filters
    and the benches there are). ``tags``/``place`` are checked when the DAG is parsed, with the
    rules of a bench spec's ``options`` (docs/benches.md).

    :param conn_id: a ``runners_labgrid`` or ``runners_bench_http`` Connection.
    """

    template_fields = ("conn_id",)

    def __init__(
        self,
        *,
        conn_id: str,
        tags: Mapping[str, str] | None = None,
        place: str | None = None,
        min_free: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        options: dict[str, Any] = {"tags": dict(tags or {})}
        if place is not None:
            options["place"] = place
        selector = parse_bench_options(options, prefix=f"{type(self).__name__}({self.task_id!r})")
        if isinstance(min_free, bool) or not isinstance(min_free, int) or min_free < 1:
            raise ValueError(f"{type(self).__name__}.min_free: {min_free!r} must be an integer >= 1")
        self.conn_id = conn_id
        self.place = selector.place
        self.tags = dict(selector.tags)
        self.min_free = min_free

    def _check(self, context: Context) -> PokeReturnValue:
        from airflow_provider_runners.triggers.sensors import bench_verdict
        from airflow_provider_runners.triggers.sources import bench_inventory

        verdict, free, message = bench_verdict(
            bench_inventory(get_backend(self.conn_id)), self.place, self.tags, self.min_free
        )
        self.log.info("%s", message)
        if verdict == "failed":
            raise AirflowFailException(f"{self.task_id}: {message}")
        return PokeReturnValue(verdict == "done", free if verdict == "done" else None)

    def _trigger(self, context: Context, deadline: str) -> BaseTrigger:
        from airflow_provider_runners.triggers.sensors import BenchFreeTrigger

        return BenchFreeTrigger(
            conn_id=self.conn_id,
            place=self.place,
            tags=self.tags,
            min_free=self.min_free,
            deadline=deadline,
            poll_interval=self.poll_interval,
        )

    def _result(self, event: dict[str, Any]) -> Any:
        return list(event.get("free") or [])


class RunnerReadySensor(_RunnersSensor):
    """Wait until a runner provisioned elsewhere is READY; return its ready handle.

    Name the runner by ``handle`` (its XCom, e.g. pulled from another DAG with a template) or by
    ``lineage``: ``{"task_id": "cluster.provision"}`` plus optional ``dag_id`` / ``run_id`` /
    ``map_index`` (default: this DAG run) — the provision task instance that owns it, or
    ``lineage_key`` directly. A runner that does not exist yet is waited for; one that is FAILED,
    or GONE after it was found, fails the sensor. Never creates, adopts or tears down anything.
    """

    template_fields = ("conn_id", "handle", "lineage", "lineage_key")

    def __init__(
        self,
        *,
        conn_id: str = "runners_default",
        handle: Any = None,
        lineage: Mapping[str, Any] | None = None,
        lineage_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        given = [
            name for name, v in (("handle", handle), ("lineage", lineage), ("lineage_key", lineage_key)) if v
        ]
        if len(given) != 1:
            raise ValueError(
                f"{type(self).__name__}({self.task_id!r}): give exactly one of handle=, lineage= or "
                f"lineage_key= (got {given or 'none'})"
            )
        if lineage is not None and "task_id" not in lineage:
            raise ValueError(
                f"{type(self).__name__}({self.task_id!r}).lineage: {dict(lineage)!r} needs 'task_id' "
                "(the provision task, e.g. 'cluster.provision'); optional: dag_id, run_id, map_index"
            )
        self.conn_id = conn_id
        self.handle = handle
        self.lineage = dict(lineage) if lineage is not None else None
        self.lineage_key = lineage_key

    def _key(self, context: Context) -> str:
        from airflow_provider_runners.lineage import Lineage

        if self.lineage_key:
            return str(self.lineage_key)
        assert self.lineage is not None
        ti = context["ti"]
        return Lineage(
            dag_id=str(self.lineage.get("dag_id") or ti.dag_id),
            run_id=str(self.lineage.get("run_id") or ti.run_id),
            task_id=str(self.lineage["task_id"]),
            map_index=int(self.lineage.get("map_index", -1)),
        ).key

    def _handle(self) -> Any:
        from airflow_provider_runners.handles import RunnerHandle

        return RunnerHandle.from_xcom(self.handle) if self.handle else None

    def _check(self, context: Context) -> PokeReturnValue:
        from airflow_provider_runners.backends.base import RunnerState

        backend = get_backend(self.conn_id)
        handle = self._handle() or backend.find(self._key(context))
        if handle is None:
            self.log.info("no runner with lineage %s yet", self._key(context))
            return PokeReturnValue(False)
        status = backend.status(handle)
        self.log.info("runner %s: %s (%s)", handle.resource_id, status.state.value, status.message)
        if status.state is RunnerState.READY:
            ready = handle.evolve(endpoints=dict(status.endpoints), details=dict(status.details))
            return PokeReturnValue(True, ready.to_xcom())
        if status.state in (RunnerState.FAILED, RunnerState.GONE):
            raise AirflowFailException(
                f"{self.task_id}: runner {handle.resource_id} is {status.state.value}: {status.message}"
            )
        return PokeReturnValue(False)

    def _trigger(self, context: Context, deadline: str) -> BaseTrigger:
        from airflow_provider_runners.triggers.sensors import RunnerAvailableTrigger

        handle = self._handle()
        return RunnerAvailableTrigger(
            conn_id=self.conn_id,
            handle=handle.to_xcom() if handle else None,
            lineage_key=None if handle else self._key(context),
            deadline=deadline,
            poll_interval=self.poll_interval,
        )

    def _result(self, event: dict[str, Any]) -> Any:
        return event["handle"]


class RunnerQueueDepthSensor(_RunnersSensor):
    """Wait until a work queue holds at least ``min_messages`` jobs; return the depth.

    ``queue_url`` (+ ``aws_conn_id``): SQS ``ApproximateNumberOfMessages`` through the Amazon
    provider's ``SqsHook`` — deferrable. ``queue_depth``: any callable returning the depth (a
    local queue, a database count); a callable cannot travel to the triggerer, so this sensor
    then pokes in the task (use ``mode="reschedule"`` to free the worker slot between pokes).
    """

    template_fields = ("queue_url", "aws_conn_id")

    def __init__(
        self,
        *,
        queue_url: str | None = None,
        aws_conn_id: str | None = "aws_default",
        queue_depth: Callable[[], int] | None = None,
        min_messages: int = 1,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 30.0)
        super().__init__(**kwargs)
        if (queue_url is None) == (queue_depth is None):
            raise ValueError(
                f"{type(self).__name__}({self.task_id!r}) needs exactly one of queue_url= (SQS) or "
                "queue_depth= (a callable)"
            )
        if isinstance(min_messages, bool) or not isinstance(min_messages, int) or min_messages < 1:
            raise ValueError(f"{type(self).__name__}.min_messages: {min_messages!r} must be an integer >= 1")
        self.queue_url = queue_url
        self.aws_conn_id = aws_conn_id
        self.queue_depth = queue_depth
        self.min_messages = min_messages
        if queue_depth is not None:
            self.deferrable = False

    def _check(self, context: Context) -> PokeReturnValue:
        if self.queue_depth is not None:
            depth = int(self.queue_depth())
        else:
            from airflow_provider_runners.triggers.sources import read_queue_depth

            depth = read_queue_depth(str(self.queue_url), self.aws_conn_id)
        self.log.info("queue depth %d (waiting for %d)", depth, self.min_messages)
        return PokeReturnValue(depth >= self.min_messages, depth)

    def _trigger(self, context: Context, deadline: str) -> BaseTrigger:
        from airflow_provider_runners.triggers.sensors import QueueDepthTrigger

        return QueueDepthTrigger(
            queue_url=str(self.queue_url),
            aws_conn_id=self.aws_conn_id,
            min_messages=self.min_messages,
            deadline=deadline,
            poll_interval=self.poll_interval or float(self.poke_interval),
        )

    def _result(self, event: dict[str, Any]) -> Any:
        return event.get("depth")
