"""Runner metrics reach a real StatsD listener (a UDP socket) through Airflow's own Stats.

Airflow is configured as a deployment would (``[metrics] statsd_on``, host, port, prefix,
``statsd_influxdb_enabled`` for the tags) and its Stats is initialised from that config; what the
socket receives is what a StatsD server would. docs/metrics.md lists every metric checked here.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_runners.core import metrics
from airflow_provider_runners.governance.runner_index import RunnerRecord
from airflow_provider_runners.governance.runner_index.sqlite import SqliteRegistry
from airflow_provider_runners.notifications.budget import ALERT_KEY, BudgetThresholdNotifier
from tests.unit.test_reaper import fleet, run_sweep  # noqa: F401 - the reaper's fixture fleet


class Listener:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lines: list[str] = []

    def read(self, wait: float = 0.3) -> list[str]:
        self.sock.settimeout(wait)
        while True:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                return self.lines
            self.lines.extend(data.decode().splitlines())

    def find(self, prefix: str) -> list[str]:
        return [line for line in self.read() if line.startswith(prefix)]


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    from airflow.sdk._shared.observability.metrics import stats as shared
    from airflow.sdk.observability import stats

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    for key, value in {
        "STATSD_ON": "True",
        "STATSD_HOST": "127.0.0.1",
        "STATSD_PORT": str(sock.getsockname()[1]),
        "STATSD_PREFIX": "airflow",
        "STATSD_INFLUXDB_ENABLED": "True",
    }.items():
        monkeypatch.setenv(f"AIRFLOW__METRICS__{key}", value)
    monkeypatch.setattr(shared, "_factory", None)  # as in a fresh process: metrics initialise Stats
    monkeypatch.setattr(shared, "_backend", None)
    yield Listener(sock)
    sock.close()
    stats.initialize(factory=lambda: shared.NoStatsLogger(), export_legacy_names=False)
    monkeypatch.setattr(shared, "_factory", None)


def test_every_metric_of_the_api_reaches_statsd_with_its_tags(statsd: Listener) -> None:
    metrics.provision("ec2", "Large", "ready", 12.5)
    metrics.provision("ec2", "Large", "refused", None)
    metrics.retry("kubernetes", "small")
    metrics.burst("hybrid", 42, "scale up", 3, 0, 1)
    metrics.budget("tenant", "analytics", 8.0, 10.0, fired=True)
    lines = statsd.read()
    assert "airflow.runners.provision.outcome,backend=ec2,profile=Large,outcome=ready:1|c" in lines
    assert (
        "airflow.runners.provision.duration,backend=ec2,profile=Large,outcome=ready:12500.000000|ms" in lines
    )
    assert "airflow.runners.provision.outcome,backend=ec2,profile=Large,outcome=refused:1|c" in lines
    assert not [line for line in lines if "duration" in line and "refused" in line]
    assert "airflow.runners.provision.retry,backend=kubernetes,profile=small:1|c" in lines
    assert "airflow.runners.burst.queue_depth,pool=hybrid:42.0|g" in lines
    assert "airflow.runners.burst.cloud_runners,pool=hybrid:1.0|g" in lines
    assert "airflow.runners.burst.decision,pool=hybrid,reason=scale_up:1|c" in lines
    assert "airflow.runners.burst.launched,pool=hybrid:3|c" in lines
    assert "airflow.runners.budget.used_ratio,scope=tenant,name=analytics:0.8|g" in lines
    assert "airflow.runners.budget.threshold_crossed,scope=tenant,name=analytics:1|c" in lines


def test_a_reaper_sweep_reports_live_runners_spend_and_actions(
    statsd: Listener,
    fleet: dict[str, Any],  # noqa: F811 - the imported fixture
) -> None:
    report = run_sweep(fleet)
    lines = statsd.read()
    live = [line for line in lines if line.startswith("airflow.runners.live,")]
    assert live == ["airflow.runners.live,backend=cloudy:4.0|g"]  # the foreign runner is not ours
    assert [line for line in lines if line.startswith("airflow.runners.spend.usd_per_hour,backend=cloudy")]
    reaped = len(report.by("reap"))
    assert reaped > 0
    assert "airflow.runners.reaper.action,backend=cloudy,action=reap:1|c" in lines
    assert lines.count("airflow.runners.reaper.action,backend=cloudy,action=reap:1|c") == reaped
    assert "airflow.runners.reaper.action,backend=cloudy,action=keep:1|c" in lines


def test_a_dry_run_sweep_reports_no_actions(statsd: Listener, fleet: dict[str, Any]) -> None:  # noqa: F811
    run_sweep(fleet, dry_run=True)
    assert not [line for line in statsd.read() if ".reaper.action" in line]


def _registry(tmp_path: Any, rates: list[float]) -> SqliteRegistry:
    registry = SqliteRegistry(str(tmp_path / "registry.sqlite"))
    now = time.time()
    for i, rate in enumerate(rates):
        registry.put(
            RunnerRecord(
                key=f"rl-{i}", backend="ec2", conn_id="runners_ec2", status="running", resource_id=f"i-{i}",
                tenant="analytics", pipeline="sales", usd_per_hour=rate, registered_at=now,
                last_heartbeat=now, expires_at=now + 3600,
            )
        )  # fmt: skip
    registry.put(
        RunnerRecord(
            key="rl-other", backend="ec2", conn_id="runners_ec2", status="running", resource_id="i-x",
            tenant="qa", usd_per_hour=50.0, registered_at=now, last_heartbeat=now, expires_at=now + 3600,
        )
    )  # fmt: skip
    return registry


def test_budget_notifier_fires_at_its_threshold_and_not_below(statsd: Listener, tmp_path: Any) -> None:
    received: list[dict[str, Any]] = []
    notifier = BudgetThresholdNotifier(
        tenant="analytics", threshold=0.8, limit=10.0, notifiers=[received.append],
        registry=_registry(tmp_path, [3.0, 4.0]),
    )  # fmt: skip
    notifier({"dag_run": None})  # $7/h of $10/h: below 80 %
    assert received == []
    assert "airflow.runners.budget.used_ratio,scope=tenant,name=analytics:0.7|g" in statsd.read()
    assert not statsd.find("airflow.runners.budget.threshold_crossed")

    (tmp_path / "b").mkdir()
    notifier.registry = _registry(tmp_path / "b", [3.0, 4.0, 1.0])
    notifier({"dag_run": None})  # $8/h: exactly the threshold
    assert len(received) == 1
    alert = received[0][ALERT_KEY]
    assert alert["live_usd_per_hour"] == 8.0
    assert alert["runners"] == ["i-0", "i-1", "i-2"]  # the other tenant's runner is not counted
    assert "80% of its $10.0000/h budget" in alert["message"]
    assert "airflow.runners.budget.threshold_crossed,scope=tenant,name=analytics:1|c" in statsd.read()


def test_budget_notifier_reads_the_catalog_budget_and_rejects_bad_input(tmp_path: Any) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "version: 1\ndefault_environment: dev\nenvironments:\n  dev:\n    budgets: {tenant: {analytics: 4.0}}\n"
    )
    notifier = BudgetThresholdNotifier(
        tenant="analytics", threshold=0.5, catalog_path=str(catalog), registry=_registry(tmp_path, [2.0])
    )
    alert = notifier.check()
    assert alert.limit == 4.0
    assert alert.fired
    with pytest.raises(ValueError, match=r"tenant: 'nobody' has no budget .*allowed: \['analytics'\]"):
        BudgetThresholdNotifier(tenant="nobody", catalog_path=str(catalog))
    with pytest.raises(ValueError, match="threshold: 1.5; allowed: 0 < threshold <= 1"):
        BudgetThresholdNotifier(tenant="analytics", threshold=1.5, limit=1.0)
    with pytest.raises(ValueError, match="exactly one of tenant= or pipeline="):
        BudgetThresholdNotifier(limit=1.0)


class _TI:
    dag_id, run_id, task_id, map_index = "etl", "manual__1", "host.provision", -1

    def __init__(self, try_number: int) -> None:
        self.try_number = try_number
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


@pytest.mark.parametrize("outcome", ["ready", "failed"])
def test_the_provision_reports_its_outcome_duration_and_retries(
    statsd: Listener, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, outcome: str
) -> None:
    from airflow_provider_runners.exceptions import ProvisionError
    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator
    from airflow_provider_runners.testing.contract import use_backend
    from airflow_provider_runners.testing.memory import InMemoryBackend

    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", f"sqlite:///{tmp_path}/registry.sqlite")
    from airflow_provider_runners.core.backend import RunnerState, RunnerStatus
    from airflow_provider_runners.operators import provision

    class Broken(InMemoryBackend):
        def status(self, handle: Any) -> RunnerStatus:
            return RunnerStatus(RunnerState.FAILED, "boot failed")

    backend = use_backend(
        monkeypatch, "runners_memory", Broken() if outcome == "failed" else InMemoryBackend()
    )
    monkeypatch.setattr(provision, "get_backend", lambda conn_id: backend)
    op = ProvisionRunnerOperator(
        task_id="provision",
        conn_id="runners_memory",
        spec={
            "runner_class": "dedicated_host",
            "profile": "Large",
            "tags": {"tenant": "t"},
        },
        deferrable=False,
    )
    ti = _TI(try_number=2)
    if outcome == "failed":
        with pytest.raises(ProvisionError):
            op.execute({"ti": ti})
    else:
        op.execute({"ti": ti})
    lines = statsd.read()
    assert f"airflow.runners.provision.outcome,backend=memory,profile=Large,outcome={outcome}:1|c" in lines
    assert [
        x
        for x in lines
        if x.startswith(f"airflow.runners.provision.duration,backend=memory,profile=Large,outcome={outcome}:")
    ]
    assert "airflow.runners.provision.retry,backend=memory,profile=Large:1|c" in lines
