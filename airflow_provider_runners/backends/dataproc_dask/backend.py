"""``dataproc_dask``: an ephemeral Google Cloud Dataproc cluster running Dask (conn type ``runners_dataproc_dask``).

The cluster runs a standalone Dask scheduler on the master (port 8786) and a Dask worker on
every worker node, installed by Dataproc's ``dask/dask.sh`` initialization action with the
``dask-runtime`` metadata key (the Dataproc v1 API has no DASK optional component). Work
tasks connect to the scheduler exactly as for ``local_dask``: through the handle's
``scheduler`` endpoint (``tcp://<cluster>-m.<zone>.c.<project>.internal:8786``), so the Airflow
workers must reach the cluster's private network.

Calls go through the google provider's ``DataprocHook`` (authenticated by the google
Connection named in ``gcp_conn_id``); the SDK is imported only inside methods.

**Resources created**

=============================  ==================================================================
what                           name / where
=============================  ==================================================================
a Dataproc cluster             ``rn-<attempt token>`` in ``project_id``/``region``: 1 master and
                               N primary workers of the profile's machine type (on-demand), and
                               the profile's secondary workers (SPOT by default), private IPs
                               only, labels managed-by, runner-lineage, tenant, pipeline,
                               profile, expires-at, runner-env; ``lifecycle_config.auto_delete_ttl``
                               = the spec's ttl (the backstop)
its Compute Engine VMs/disks   ``<cluster>-m``, ``<cluster>-w-<i>`` (CMEK-encrypted with
                               ``kms_key_name`` when set)
an autoscaling policy          ``autoscaling_policy_id`` (default ``runners-<profile>-<min>-<max>``),
                               shared by every cluster of the same bounds; never deleted by us
Dataproc staging/temp objects  the region's default Dataproc buckets (Dataproc manages them)
=============================  ==================================================================

**Backstop.** ``auto_delete_ttl`` deletes the cluster at the spec's ttl even if Airflow never
runs the teardown. ``idle_delete_ttl`` is deliberately *not* used: Dataproc counts only YARN
and Jobs API activity as "not idle", so with a standalone Dask runtime it can delete a cluster
while Dask is busy. For the same reason the autoscaling policy (YARN-metric driven) mostly
bounds the cluster between ``min`` and ``max`` rather than following Dask's load.

**Connection extras** (``project_id`` and ``region`` required):

==========================  ==================================================================
``project_id``              GCP project of the clusters
``region``                  Dataproc region, e.g. ``europe-west1``
``zone``                    zone (empty: Dataproc Auto Zone placement)
``subnetwork_uri``          subnetwork; the cluster gets private IPs only
``service_account``         VM service account (least privilege: roles/dataproc.worker)
``kms_key_name``            CMEK key for the cluster's persistent disks
``image_version``           Dataproc image, default ``2.2-debian12``
``init_action_uri``         default ``gs://goog-dataproc-initialization-actions-{region}/dask/dask.sh``
``dask_runtime``            ``standalone`` (default) or ``yarn``: metadata ``dask-runtime``
``autoscaling_policy_id``   policy id to ensure (default ``runners-<profile>-<min>-<max>``)
``gcp_conn_id``             google provider Connection used to authenticate (``google_cloud_default``)
``scheduler_address_template``  format string with ``{cluster}``, ``{zone}``, ``{project}``,
                            ``{region}``; default ``tcp://{cluster}-m.{zone}.c.{project}.internal:8786``
==========================  ==================================================================

Spec ``options``: ``workers`` (initial primary workers), ``min_workers``, ``max_workers``
(autoscaling bounds), all within the catalog profile's bounds; ``secondary_workers`` (spot /
preemptible secondaries, preemptibility from the profile: docs/dataproc.md).

**Manual cleanup**::

    gcloud dataproc clusters list --region=REGION --filter='labels.managed-by=airflow-provider-runners'
    gcloud dataproc clusters delete CLUSTER --region=REGION --quiet
    gcloud dataproc autoscaling-policies delete runners-standard-2-10 --region=REGION --quiet
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from airflow_provider_runners.backends.dataproc_dask.errors import DATAPROC_ERRORS, google_exceptions
from airflow_provider_runners.backends.dataproc_dask.options import (  # noqa: F401 - re-exported
    CONN_FIELDS,
    OPTION_KEYS,
    REGION_RE,
    DataprocDaskOptions,
    check_resolved,
    secondary_workers,
    validate_region,
    validate_spec,
    worker_bounds,
)
from airflow_provider_runners.backends.dataproc_dask.readback import gcs_object_facts, state_times, zone_of
from airflow_provider_runners.core.backend import (
    Backend,
    ConnectionConfig,
    ConnField,
    ProvisionRequest,
    RunnerState,
    RunnerStatus,
    TeardownResult,
)
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY
from airflow_provider_runners.exceptions import (
    ConnectionConfigError,
    MissingExtraError,
    ProvisionError,
    RunnerSpecError,
)

if TYPE_CHECKING:
    from airflow_provider_runners.core.catalog import ResolvedSpec

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "2.2-debian12"
DEFAULT_INIT_ACTION = "gs://goog-dataproc-initialization-actions-{region}/dask/dask.sh"
DEFAULT_SCHEDULER = "tcp://{cluster}-m.{zone}.c.{project}.internal:8786"
DASHBOARD_PORT = 8787
NAME_PREFIX = "rn-"
ZONE_RE = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+-[a-z]$")
CLUSTER_NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,49}[a-z0-9])?$")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
PENDING_STATES = frozenset({"CREATING", "UPDATING", "STARTING", "UNKNOWN", "STATE_UNSPECIFIED"})
FAILED_STATES = frozenset({"ERROR", "ERROR_DUE_TO_UPDATE", "STOPPING", "STOPPED", "REPAIRING"})
PROGRESS_EVERY_S = 30.0


def cluster_name(attempt_token: str) -> str:
    """Deterministic cluster name for one try: ``rn-<token>`` (lowercase, <= 51 chars, starts with a letter)."""
    name = NAME_PREFIX + attempt_token.lower().replace("_", "-")
    if not CLUSTER_NAME_RE.match(name):
        raise ValueError(f"cluster name {name!r} from attempt token {attempt_token!r} is not valid")
    return name


def autoscaling_client(hook: Any, region: str) -> Any:
    """An AutoscalingPolicyServiceClient with the hook's credentials (the hook has no getter)."""
    from google.cloud.dataproc_v1 import AutoscalingPolicyServiceClient

    return AutoscalingPolicyServiceClient(
        credentials=hook.get_credentials(),
        client_options=hook.get_client_options(api_endpoint_override=hook._get_api_endpoint(region=region)),
    )


class DataprocDaskBackend(Backend):
    """Dask on ephemeral Dataproc clusters. Resources, extras and cleanup: see the module docstring."""

    name = "dataproc_dask"
    conn_type = "runners_dataproc_dask"
    hook_name = "Runners: Dataproc Dask cluster"
    conn_fields: ClassVar[Mapping[str, ConnField]] = CONN_FIELDS
    runner_classes: ClassVar[frozenset[str]] = frozenset({"dask_cluster"})
    options_model: ClassVar[type[BaseModel] | None] = DataprocDaskOptions
    error_map = DATAPROC_ERRORS  # errors.py: 429/5xx/transport transient, NotFound gone, auth/4xx permanent

    @classmethod
    def check_spec(cls, resolved: ResolvedSpec) -> None:
        """The options model, then a cloud profile and worker bounds (as :func:`validate_spec`)."""
        super().check_spec(resolved)
        check_resolved(resolved)

    poll_interval = 15.0
    idle_timeout_unsupported: ClassVar[str | None] = (
        "Dataproc's idle_delete_ttl counts YARN and Jobs API work, not Dask's, and would delete a busy "
        "cluster (docs/dataproc.md); the ttl (auto_delete_ttl) ends it"
    )
    #: Seconds between get_cluster calls while waiting for a deletion, and the bound of that wait.
    teardown_poll_s: ClassVar[float] = 10.0
    teardown_timeout_s: ClassVar[float] = 15 * 60.0

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        extra = config.extra
        self.region = validate_region(extra.get("region"), f"Connection {config.conn_id!r} extra region")
        self._project_id: str | None = extra.get("project_id") or None
        zone = extra.get("zone") or None
        if zone is not None and not (ZONE_RE.match(zone) and zone.startswith(self.region + "-")):
            raise ConnectionConfigError(
                f"Connection {config.conn_id!r} extra zone: {zone!r} is not a zone of {self.region!r}"
            )
        self.zone: str | None = zone
        self.subnetwork_uri: str | None = extra.get("subnetwork_uri") or None
        self.service_account: str | None = extra.get("service_account") or None
        self.kms_key_name: str | None = extra.get("kms_key_name") or None
        self.image_version: str = extra.get("image_version") or DEFAULT_IMAGE
        self.init_action_uri: str = (extra.get("init_action_uri") or DEFAULT_INIT_ACTION).format(
            region=self.region
        )
        self.dask_runtime: str = extra.get("dask_runtime") or "standalone"
        self.autoscaling_policy_id: str | None = extra.get("autoscaling_policy_id") or None
        self.gcp_conn_id: str = extra.get("gcp_conn_id") or "google_cloud_default"
        self.scheduler_address_template: str = extra.get("scheduler_address_template") or DEFAULT_SCHEDULER
        self._dataproc_hook: Any = None

    # -- plumbing ------------------------------------------------------------------------------
    def _hook(self) -> Any:
        """The google provider's DataprocHook (reads the ``gcp_conn_id`` Connection once)."""
        if self._dataproc_hook is None:
            try:
                from airflow.providers.google.cloud.hooks.dataproc import DataprocHook
            except ImportError as exc:
                raise MissingExtraError("apache-airflow-providers-google", "google", self.name) from exc
            self._dataproc_hook = DataprocHook(gcp_conn_id=self.gcp_conn_id)
        return self._dataproc_hook

    _gexc = staticmethod(google_exceptions)

    @property
    def project_id(self) -> str:
        if self._project_id is None:
            self._project_id = self._hook().project_id
            if not self._project_id:
                raise ConnectionConfigError(
                    f"Connection {self.conn_id!r} extra project_id: required (the google Connection has no project either)"
                )
        return self._project_id

    def batch_key(self) -> str:
        return f"{self.name}:{self._project_id or self.gcp_conn_id}:{self.region}"

    def _where(self) -> dict[str, str]:
        return {"region": self.region, "project_id": self.project_id}

    def _list(self, hook: Any, label_filter: str) -> list[Any]:
        return list(hook.list_clusters(filter_=label_filter, page_size=1000, **self._where()))

    # -- cluster config ------------------------------------------------------------------------
    def _ensure_policy(self, hook: Any, policy_id: str, lo: int, hi: int, secondaries: int = 0) -> str:
        """Create the autoscaling policy if missing, update it if its bounds differ; return its URI."""
        exceptions = self._gexc()
        parent = f"projects/{self.project_id}/regions/{self.region}"
        name = f"{parent}/autoscalingPolicies/{policy_id}"
        wanted = {
            "id": policy_id,
            "worker_config": {"min_instances": lo, "max_instances": hi, "weight": 1},
            # the autoscaler keeps the spot secondaries it was given (its default max is 0)
            "secondary_worker_config": {
                "min_instances": secondaries,
                "max_instances": secondaries,
                "weight": 1,
            },
            "basic_algorithm": {
                "cooldown_period": timedelta(minutes=2),
                "yarn_config": {
                    "graceful_decommission_timeout": timedelta(minutes=10),
                    "scale_up_factor": 0.5,
                    "scale_down_factor": 0.5,
                },
            },
        }
        client = autoscaling_client(hook, self.region)
        try:
            current = client.get_autoscaling_policy(name=name)
        except exceptions.NotFound:
            try:
                client.create_autoscaling_policy(parent=parent, policy=wanted)
            except exceptions.AlreadyExists:  # a concurrent provision made it: same content
                pass
            return name
        bounds = (current.worker_config.min_instances, current.worker_config.max_instances)
        if bounds != (lo, hi):
            log.info("autoscaling policy %s has workers %s; updating to %s", name, bounds, (lo, hi))
            client.update_autoscaling_policy(policy={**wanted, "name": name})
        return name

    def cluster_config(self, resolved: ResolvedSpec, workers: int, policy_uri: str | None) -> dict[str, Any]:
        """The ClusterConfig sent to Dataproc (a dict in the proto's field names)."""
        profile = resolved.profile
        machine = profile.machine_type or ""
        disk = {"boot_disk_type": "pd-balanced", "boot_disk_size_gb": profile.disk_gib or 100}
        gce: dict[str, Any] = {
            "internal_ip_only": True,
            "metadata": {"dask-runtime": self.dask_runtime},
            "service_account_scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            "shielded_instance_config": {"enable_secure_boot": True, "enable_vtpm": True},
        }
        if self.zone:
            gce["zone_uri"] = self.zone
        if self.subnetwork_uri:
            gce["subnetwork_uri"] = self.subnetwork_uri
        if self.service_account:
            gce["service_account"] = self.service_account
        count, preemptibility = secondary_workers(resolved.spec, resolved)
        config: dict[str, Any] = {
            "gce_cluster_config": gce,
            "master_config": {"num_instances": 1, "machine_type_uri": machine, "disk_config": disk},
            "worker_config": {"num_instances": workers, "machine_type_uri": machine, "disk_config": disk},
            "software_config": {"image_version": self.image_version},
            "initialization_actions": [
                {"executable_file": self.init_action_uri, "execution_timeout": timedelta(minutes=15)}
            ],
            "lifecycle_config": {"auto_delete_ttl": resolved.spec.ttl},
        }
        if count:  # spot / preemptible capacity; master and primaries stay on-demand (docs/dataproc.md)
            config["secondary_worker_config"] = {
                "num_instances": count,
                "preemptibility": preemptibility,
                "machine_type_uri": machine,
                "disk_config": disk,
            }
        if policy_uri:
            config["autoscaling_config"] = {"policy_uri": policy_uri}
        if self.kms_key_name:
            config["encryption_config"] = {"gce_pd_kms_key_name": self.kms_key_name}
        return config

    # -- interface -----------------------------------------------------------------------------
    def create(self, request: ProvisionRequest) -> RunnerHandle:
        resolved, spec = request.resolved, request.resolved.spec
        if not REQUEST_ID_RE.match(request.attempt_token):
            raise ValueError(f"attempt token {request.attempt_token!r} is not a valid Dataproc request_id")
        if not resolved.profile.machine_type:
            raise RunnerSpecError(
                f"spec.profile: {spec.profile!r} in {resolved.environment!r} has no machine_type"
            )
        workers, lo, hi = worker_bounds(spec, resolved)
        count, preemptibility = secondary_workers(spec, resolved)
        name = cluster_name(request.attempt_token)
        now = datetime.now(UTC)
        labels = request.resource_labels()
        hook = self._hook()
        policy_id = self.autoscaling_policy_id or f"runners-{spec.profile.lower()}-{lo}-{hi}" + (
            f"-s{count}" if count else ""
        )
        policy_uri = self._ensure_policy(hook, policy_id, lo, hi, count)
        try:
            hook.create_cluster(
                cluster_name=name,
                cluster_config=self.cluster_config(resolved, workers, policy_uri),
                labels=dict(labels),  # the hook adds airflow-version to the dict it is given
                request_id=request.attempt_token,
                **self._where(),
            )
        except self._gexc().AlreadyExists:
            log.info("cluster %s already exists (a replay of attempt %s)", name, request.attempt_token)
        details = self._details(workers, resolved.profile.machine_type, policy_uri, count, preemptibility)
        return RunnerHandle(
            backend=self.name,
            runner_class=spec.runner_class,
            resource_id=name,
            conn_id=request.conn_id,
            lineage_key=request.lineage.key,
            attempt_token=request.attempt_token,
            created_at=now,
            expires_at=request.expires_at,
            environment=resolved.environment,
            profile=spec.profile,
            tags={k: v for k, v in labels.items() if k != "airflow-version"},
            details=details,
            # master + workers + secondaries at the catalog's per-machine price and vCPUs (the
            # Dataproc per-vCPU fee counts them all); the spot secondaries at the spot price
            pricing=request.pricing(int(details["nodes"]), int(details["spot_nodes"])),
        )

    def billed_nodes(self, resolved: ResolvedSpec) -> int:
        """Master + initial primary workers + secondary workers (as ``details.nodes`` after create)."""
        return worker_bounds(resolved.spec, resolved)[0] + 1 + secondary_workers(resolved.spec, resolved)[0]

    def spot_nodes(self, resolved: ResolvedSpec) -> int:
        """Of :meth:`billed_nodes`, those billed at the spot price: SPOT / PREEMPTIBLE secondaries."""
        count, preemptibility = secondary_workers(resolved.spec, resolved)
        return 0 if preemptibility == "NON_PREEMPTIBLE" else count

    def _details(
        self, workers: int, machine: str | None, policy: str | None, secondaries: int = 0, preempt: str = ""
    ) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "region": self.region,
            "zone": self.zone,
            "machine_type": machine,
            "workers": workers,
            # master + workers: the handle's pricing multiplies the catalog's per-machine
            # price and vCPUs (and so the Dataproc per-vCPU fee) by this
            "nodes": workers + 1 + secondaries,
            # of those, billed at the catalog's spot price (core/prices.py); the rest on-demand
            "spot_nodes": 0 if preempt in ("", "NON_PREEMPTIBLE") else secondaries,
            "secondary_workers": secondaries,
            "secondary_preemptibility": preempt or None,
            "autoscaling_policy": policy,
        }

    def _handle_from_cluster(self, cluster: Any) -> RunnerHandle:
        labels = dict(cluster.labels)
        name = cluster.cluster_name
        token = name.removeprefix(NAME_PREFIX)
        created = state_times(cluster).get("CREATING") or datetime.now(UTC)
        expires = labels.get("expires-at")
        config = cluster.config
        workers = config.worker_config.num_instances
        return RunnerHandle(
            backend=self.name,
            runner_class="dask_cluster",
            resource_id=name,
            conn_id=self.conn_id,
            lineage_key=labels.get("runner-lineage", ""),
            attempt_token=token,
            created_at=created,
            expires_at=datetime.fromtimestamp(int(expires), UTC) if expires else created + timedelta(hours=2),
            environment=labels.get("runner-env", "unknown"),
            profile=labels.get("profile", "unknown"),
            tags={k: v for k, v in labels.items() if not k.startswith("goog-") and k != "airflow-version"},
            details=self._details(
                workers,
                config.worker_config.machine_type_uri.rsplit("/", 1)[-1] or None,
                config.autoscaling_config.policy_uri or None,
                config.secondary_worker_config.num_instances,
                config.secondary_worker_config.preemptibility.name
                if config.secondary_worker_config.num_instances
                else "",
            ),
        )

    def find(self, lineage_key: str) -> RunnerHandle | None:
        found = self._list(
            self._hook(), f"labels.managed-by = {MANAGED_BY} AND labels.runner-lineage = {lineage_key}"
        )
        live = [c for c in found if c.status.state.name != "DELETING"]
        if not live:
            return None
        live.sort(key=lambda c: state_times(c).get("CREATING") or datetime.min.replace(tzinfo=UTC))
        return self._handle_from_cluster(live[-1])

    def _status_of(self, cluster: Any) -> RunnerStatus:
        state = cluster.status.state.name
        detail = cluster.status.detail
        message = f"{state}{f' ({detail})' if detail else ''}"
        if state == "RUNNING":
            address, dashboard = self._endpoints(cluster)
            return RunnerStatus(
                RunnerState.READY,
                f"RUNNING at {address}",
                endpoints={"scheduler": address, "dashboard": dashboard},
                details={"cluster_uuid": cluster.cluster_uuid, "zone": zone_of(cluster)},
            )
        if state in FAILED_STATES:
            return RunnerStatus(RunnerState.FAILED, message)
        if state == "DELETING":
            return RunnerStatus(RunnerState.GONE, message)
        return RunnerStatus(RunnerState.PENDING, message)

    def _endpoints(self, cluster: Any) -> tuple[str, str]:
        values = {
            "cluster": cluster.cluster_name,
            "zone": zone_of(cluster) or "",
            "project": self.project_id,
            "region": self.region,
        }
        address = self.scheduler_address_template.format(**values)
        host = address.split("://", 1)[-1].rsplit(":", 1)[0]
        return address, f"http://{host}:{DASHBOARD_PORT}/status"

    def status(self, handle: RunnerHandle) -> RunnerStatus:
        try:
            cluster = self._hook().get_cluster(cluster_name=handle.resource_id, **self._where())
        except self._gexc().NotFound:
            return RunnerStatus(RunnerState.GONE, "cluster not found")
        return self._status_of(cluster)

    def status_many(self, handles: Iterable[RunnerHandle]) -> dict[str, RunnerStatus]:
        """All waiting clusters of this project/region with one list_clusters call (label filter)."""
        handles = list(handles)
        if not handles:
            return {}
        found = {c.cluster_name: c for c in self._list(self._hook(), f"labels.managed-by = {MANAGED_BY}")}
        # Not listed (e.g. its labels were edited by hand): ask for it by name before calling it GONE.
        return {
            h.resource_id: self._status_of(found[h.resource_id]) if h.resource_id in found else self.status(h)
            for h in handles
        }

    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        """Delete (ERROR clusters too: they bill) and wait until Dataproc reports NotFound."""
        exceptions = self._gexc()
        hook = self._hook()
        where = {"cluster_name": handle.resource_id, **self._where()}
        before = None
        try:
            before = hook.get_cluster(**where).status.state.name
            hook.delete_cluster(request_id=f"{handle.attempt_token}-del"[:40], **where)
        except exceptions.NotFound:
            return TeardownResult(existed=False, message="already gone (NotFound)")
        except exceptions.FailedPrecondition as exc:  # already DELETING: wait for it below
            log.info("delete of %s not accepted (%s); waiting for it to go", handle.resource_id, exc)
        started = last_progress = time.monotonic()
        polls = 0
        while True:
            polls += 1
            try:
                state = hook.get_cluster(**where).status.state.name
            except exceptions.NotFound:
                break
            now = time.monotonic()
            if now - started > self.teardown_timeout_s:
                raise ProvisionError(
                    f"cluster {handle.resource_id} still {state} {now - started:.0f}s after delete; "
                    "its auto_delete_ttl backstop will remove it"
                )
            if now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                log.info("deleting cluster %s: %s (%.0fs)", handle.resource_id, state, now - started)
            time.sleep(self.teardown_poll_s)
        return TeardownResult(
            existed=True,
            message=f"deleted (was {before})",
            details={
                "state_before": before,
                "deleted_in_s": round(time.monotonic() - started, 3),
                "delete_polls": polls,
            },
        )

    def describe(self, handle: RunnerHandle) -> dict[str, Any]:
        hook = self._hook()
        try:
            cluster = hook.get_cluster(cluster_name=handle.resource_id, **self._where())
        except self._gexc().NotFound:
            return {"cluster": handle.resource_id, "state": "NOT_FOUND"}
        config = cluster.config
        times = state_times(cluster)
        try:
            init_object: dict[str, Any] = gcs_object_facts(hook, self.init_action_uri)
        except Exception as exc:  # noqa: BLE001 - evidence is best effort; never fail the provision
            init_object = {"uri": self.init_action_uri, "error": f"{type(exc).__name__}: {exc}"}
        workers = config.worker_config.num_instances
        ready = times.get("RUNNING")
        return {
            "cluster": cluster.cluster_name,
            "cluster_uuid": cluster.cluster_uuid,
            "state": cluster.status.state.name,
            "project_id": self.project_id,
            "region": self.region,
            "zone": zone_of(cluster),
            "image_version": config.software_config.image_version,
            "init_actions": [
                {"uri": a.executable_file, "timeout_s": a.execution_timeout.total_seconds()}
                for a in config.initialization_actions
            ],
            "init_action_object": init_object,
            "dask_runtime": config.gce_cluster_config.metadata.get("dask-runtime"),
            "master": {
                "machine_type": config.master_config.machine_type_uri.rsplit("/", 1)[-1],
                "instances": list(config.master_config.instance_names),
            },
            "workers": {
                "machine_type": config.worker_config.machine_type_uri.rsplit("/", 1)[-1],
                "count": workers,
                "instances": len(config.worker_config.instance_names),
            },
            # read back from the created cluster: what was provisioned, not what was asked
            "secondary_workers": {
                "machine_type": config.secondary_worker_config.machine_type_uri.rsplit("/", 1)[-1] or None,
                "count": config.secondary_worker_config.num_instances,
                "preemptibility": config.secondary_worker_config.preemptibility.name
                if config.secondary_worker_config.num_instances
                else None,
                "instances": len(config.secondary_worker_config.instance_names),
            },
            "market": {"master": "on-demand", "primary_workers": "on-demand"},
            "autoscaling_policy": config.autoscaling_config.policy_uri or None,
            "auto_delete_ttl_s": config.lifecycle_config.auto_delete_ttl.total_seconds(),
            "internal_ip_only": config.gce_cluster_config.internal_ip_only,
            "subnetwork_uri": config.gce_cluster_config.subnetwork_uri or None,
            "service_account": config.gce_cluster_config.service_account or None,
            "kms_key_name": config.encryption_config.gce_pd_kms_key_name or None,
            "labels": dict(cluster.labels),
            "timings": {state: when.isoformat() for state, when in times.items()},
            "create_to_running_s": round((ready - times["CREATING"]).total_seconds(), 3)
            if ready and "CREATING" in times
            else None,
            "vcpus_total": handle.priced.vcpus if handle.priced else None,
            "cost_basis": "catalog on-demand $/h x (1 master + primary workers) + catalog spot $/h x "
            "SPOT/PREEMPTIBLE secondary workers + Dataproc $/vCPU-h x all vCPUs, per second, "
            "1-minute minimum; autoscaled workers beyond the initial count are not included",
        }

    def probe(self) -> str:
        """ "Test Connection": one clusters.list call (page size 1) in the project and region."""
        pager = self._hook().list_clusters(
            filter_=f"labels.managed-by = {MANAGED_BY}", page_size=1, **self._where()
        )
        first = next(iter(pager), None)
        return (
            f"Dataproc API reachable: project {self.project_id!r}, region {self.region!r}; "
            f"{'a' if first is not None else 'no'} managed cluster listed"
        )

    def list_managed(self) -> list[RunnerHandle]:
        found = self._list(self._hook(), f"labels.managed-by = {MANAGED_BY}")
        return [self._handle_from_cluster(c) for c in found if c.status.state.name != "DELETING"]
