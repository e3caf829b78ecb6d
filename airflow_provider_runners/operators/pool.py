"""Warm-pool maintenance task: :class:`WarmPoolMaintenanceOperator` (EC2 warm pools, docs/ec2.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_runners.backends.registry import get_backend
from airflow_provider_runners.exceptions import ConnectionConfigError, RunnerError

if TYPE_CHECKING:
    from airflow.sdk import Context


class WarmPoolError(RunnerError, RuntimeError):
    """A warm-pool pass could not do everything (a pool failed to resolve, launch or terminate)."""


class WarmPoolMaintenanceOperator(BaseOperator):
    """One maintenance pass over the EC2 warm pools of a ``runners_ec2`` Connection.

    Terminates idle pooled hosts past their expiry, idle longer than their pool's ``idle_ttl``
    or beyond its ``max_size``; pre-warms pools below ``min_size`` (launch, wait, stop, tag
    idle). Pools come from the Connection extra ``warm_pools``
    (:mod:`~airflow_provider_runners.backends.ec2.warm_pool`). ``report_only=True`` changes
    nothing and returns what would be done. The task fails after the whole pass when something
    could not be done (the report names it); hosts it launched are in the pool either way.

    Resources: the pre-warmed EC2 instances and their DynamoDB claim items; they are ended by
    the next pass (idle ttl) or by hand (docs/ec2.md, "Warm pool lifecycle").
    """

    template_fields = ("conn_id", "report_only", "catalog_path")
    ui_color = "#e3ecf7"

    def __init__(
        self,
        *,
        conn_id: str = "runners_ec2_default",
        report_only: bool = False,
        catalog_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.report_only = report_only
        self.catalog_path = catalog_path

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_runners.backends.ec2.warm_pool import maintain

        backend = get_backend(self.conn_id)
        if backend.name != "ec2":
            raise ConnectionConfigError(
                f"Connection {self.conn_id!r}: warm pools need conn_type 'runners_ec2'; "
                f"this Connection is for backend {backend.name!r}"
            )
        report_only = self.report_only in (True, "true", "True", "1")
        report = maintain(backend, report_only=report_only, catalog_path=self.catalog_path or None)  # type: ignore[arg-type]
        for action in report.actions:
            self.log.info(
                "%s %s %s: %s (%s)",
                action.action,
                action.pool,
                action.instance_id,
                action.reason,
                action.result,
            )
        for row in report.pools:
            self.log.info(
                "pool %s: %s idle, %s in use (min %s, max %s)",
                row["pool"],
                row["idle"],
                row["in_use"],
                row["min_size"],
                row["max_size"],
            )
        if report.errors:
            raise WarmPoolError(f"warm pool pass on {self.conn_id!r}: {report.errors}")
        return report.summary()
