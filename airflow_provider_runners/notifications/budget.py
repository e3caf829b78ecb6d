"""BudgetThresholdNotifier: fires when a tenant's or pipeline's live $/hour reaches a share of its budget.

What it is for: a warning *before* the budget guard (docs/cost.md, "Budgets") starts refusing
provisions. Attach it where Airflow takes notifiers — ``on_success_callback`` /
``on_failure_callback`` of a provision, or a DAG's callbacks, or the ``runner_reaper`` DAG
that runs every 15 minutes::

    BudgetThresholdNotifier(tenant="analytics", threshold=0.8,
                            notifiers=[SlackNotifier(text="{{ runners_budget_alert.message }}")])

Each call sums the live runners' $/hour in the runner registry (docs/cost.md, "Runner registry")
for that tenant / pipeline, compares it with ``limit`` (default: the catalog's budget of the
environment) and emits ``runners.budget.used_ratio``; at or above ``threshold`` x limit it
*fires*: ``runners.budget.threshold_crossed`` (docs/metrics.md), a warning in the log, and every
notifier in ``notifiers`` is called with the context plus ``runners_budget_alert`` (scope, name,
live, limit, ratio, threshold, runners, message). Creates nothing; reads the registry only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from airflow.sdk import BaseNotifier

from airflow_provider_runners.core import metrics

ALERT_KEY = "runners_budget_alert"


@dataclass(frozen=True)
class BudgetAlert:
    """One budget's state at one check."""

    scope: str
    name: str
    live_usd_per_hour: float
    limit: float
    threshold: float
    runners: tuple[str, ...]

    @property
    def ratio(self) -> float:
        return self.live_usd_per_hour / self.limit if self.limit else 0.0

    @property
    def fired(self) -> bool:
        return self.limit > 0 and self.live_usd_per_hour >= self.threshold * self.limit - 1e-9

    @property
    def message(self) -> str:
        return (
            f"{self.scope} {self.name!r}: live runners ${self.live_usd_per_hour:.4f}/h = {self.ratio:.0%} of its "
            f"${self.limit:.4f}/h budget (threshold {self.threshold:.0%}; {len(self.runners)} runners)"
        )


class BudgetThresholdNotifier(BaseNotifier):
    """See the module docstring.

    :param tenant: the tenant budget to watch (or ``pipeline``; exactly one).
    :param threshold: share of the budget that fires (0 < threshold <= 1; default 0.8).
    :param limit: $/hour; default the catalog's ``environments.<env>.budgets`` entry.
    :param environment: catalog environment (default: the catalog's default environment).
    :param notifiers: notifiers / callables called with the context when it fires.
    """

    template_fields = ("tenant", "pipeline")

    def __init__(
        self,
        *,
        tenant: str | None = None,
        pipeline: str | None = None,
        threshold: float = 0.8,
        limit: float | None = None,
        environment: str | None = None,
        catalog_path: str | None = None,
        notifiers: Sequence[Callable[..., Any]] = (),
        registry: Any = None,
    ) -> None:
        super().__init__()
        if (tenant is None) == (pipeline is None):
            raise ValueError("BudgetThresholdNotifier needs exactly one of tenant= or pipeline=")
        if not 0 < threshold <= 1:
            raise ValueError(f"BudgetThresholdNotifier threshold: {threshold!r}; allowed: 0 < threshold <= 1")
        if limit is not None and limit <= 0:
            raise ValueError(f"BudgetThresholdNotifier limit: {limit!r}; allowed: > 0 ($/hour)")
        self.tenant, self.pipeline = tenant, pipeline
        self.threshold, self.limit = threshold, limit
        self.environment, self.catalog_path = environment, catalog_path
        self.notifiers = list(notifiers)
        self.registry = registry
        if limit is None:
            self._limit()  # no budget in the catalog: a parse-time error, not a silent no-op

    def _limit(self) -> float:
        if self.limit is not None:
            return self.limit
        from airflow_provider_runners.core.catalog import load_catalog

        catalog = load_catalog(self.catalog_path)
        env_name = self.environment or catalog.default_environment
        env = catalog.environments[env_name]
        scope, name = ("tenant", self.tenant) if self.tenant is not None else ("pipeline", self.pipeline)
        budgets = getattr(env.budgets, scope)
        if name not in budgets:
            raise ValueError(
                f"BudgetThresholdNotifier {scope}: {name!r} has no budget in environments.{env_name}.budgets."
                f"{scope}; allowed: {sorted(budgets)} (or pass limit=)"
            )
        return float(budgets[name])

    def check(self, now: float | None = None) -> BudgetAlert:
        """The budget's state now (reads the registry; emits ``runners.budget.used_ratio``)."""
        from airflow_provider_runners.governance.budget import safe_registry

        now = time.time() if now is None else now
        scope, name = ("tenant", self.tenant) if self.tenant is not None else ("pipeline", self.pipeline)
        records = [r for r in safe_registry(self.registry).live(now) if getattr(r, scope) == name]
        alert = BudgetAlert(
            scope=scope,
            name=str(name),
            live_usd_per_hour=round(sum(r.usd_per_hour for r in records), 6),
            limit=self._limit(),
            threshold=self.threshold,
            runners=tuple(sorted(r.resource_id or r.key for r in records)),
        )
        metrics.budget(scope, str(name), alert.live_usd_per_hour, alert.limit, alert.fired)
        return alert

    def notify(self, context: Any) -> None:
        alert = self.check()
        if not alert.fired:
            self.log.info("budget ok: %s", alert.message)
            return
        self.log.warning("budget threshold reached: %s", alert.message)
        payload = {
            **asdict(alert),
            "runners": list(alert.runners),
            "ratio": round(alert.ratio, 6),
            "message": alert.message,
        }
        for notifier in self.notifiers:
            notifier({**(context or {}), ALERT_KEY: payload})
