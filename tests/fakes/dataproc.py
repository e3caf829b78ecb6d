"""A fake Dataproc API at the *transport* layer: the real google-cloud-dataproc clients (and the
real ``DataprocHook`` code above them) run unchanged; only the wire is replaced.

:class:`FakeDataproc` keeps cluster and autoscaling-policy state and records every request
proto, so tests assert requests field by field. Clusters go CREATING -> RUNNING (or ERROR,
when told) after ``ready_after`` reads (get or list) and DELETING -> gone after
``delete_reads`` reads. Use :meth:`FakeDataproc.cluster_client` / :meth:`policy_client` to get
real clients wired to it, or :meth:`patch` to make ``DataprocHook`` build such clients.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.gapic_v1.client_info import DEFAULT_CLIENT_INFO
from google.auth.credentials import AnonymousCredentials
from google.cloud.dataproc_v1 import AutoscalingPolicyServiceClient, ClusterControllerClient
from google.cloud.dataproc_v1.services.autoscaling_policy_service.transports.base import (
    AutoscalingPolicyServiceTransport,
)
from google.cloud.dataproc_v1.services.cluster_controller.transports.base import ClusterControllerTransport
from google.cloud.dataproc_v1.types import autoscaling_policies, clusters
from google.longrunning import operations_pb2

#: Read methods (count against Dataproc's read quota); everything else is a write.
READS = frozenset({"get_cluster", "list_clusters", "get_autoscaling_policy", "get_operation"})
ACTIVE = {"CREATING", "UPDATING", "RUNNING"}
RESOLVED_IMAGE = {"2.2-debian12": "2.2.57-debian12"}


@dataclass
class _Entry:
    cluster: clusters.Cluster
    request_id: str
    reads: int = 0
    goes_error: bool = False
    deleting_reads: int = 0


@dataclass
class FakeDataproc:
    """Shared state of the fake Dataproc service (one project, many regions)."""

    ready_after: int = 2
    delete_reads: int = 1
    default_zone: str = "us-central1-b"
    #: The next N created clusters end in ERROR instead of RUNNING.
    error_next_creates: int = 0
    requests: list[tuple[str, Any]] = field(default_factory=list)
    entries: dict[tuple[str, str, str], _Entry] = field(default_factory=dict)
    policies: dict[str, autoscaling_policies.AutoscalingPolicy] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- inspection ----------------------------------------------------------------------------
    def calls(self, method: str | None = None) -> list[Any]:
        """Recorded request protos, optionally of one method."""
        return [req for name, req in self.requests if method is None or name == method]

    def methods(self) -> list[str]:
        return [name for name, _ in self.requests]

    def reads(self) -> int:
        return sum(1 for name, _ in self.requests if name in READS)

    def cluster(self, name: str) -> clusters.Cluster | None:
        for (_, _, cname), entry in self.entries.items():
            if cname == name:
                return entry.cluster
        return None

    # -- clients -------------------------------------------------------------------------------
    def cluster_client(self) -> ClusterControllerClient:
        return ClusterControllerClient(transport=FakeClusterTransport(self))

    def policy_client(self) -> AutoscalingPolicyServiceClient:
        return AutoscalingPolicyServiceClient(transport=FakePolicyTransport(self))

    def patch(self, monkeypatch: Any) -> FakeDataproc:
        """Make DataprocHook (and the backend's policy client) build clients on this fake."""
        from airflow.providers.google.cloud.hooks.dataproc import DataprocHook

        from airflow_provider_runners.backends.dataproc_dask import backend as dataproc_dask

        monkeypatch.setattr(
            DataprocHook, "get_cluster_client", lambda hook, region=None: self.cluster_client()
        )
        monkeypatch.setattr(
            dataproc_dask, "autoscaling_client", lambda hook, region: self.policy_client(), raising=True
        )
        return self

    # -- server side ---------------------------------------------------------------------------
    def _record(self, method: str, request: Any) -> None:
        with self.lock:
            self.requests.append((method, request))

    def _observe(self, key: tuple[str, str, str]) -> clusters.Cluster | None:
        """A read of one cluster: advance its state machine, return it (None when gone)."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        state = entry.cluster.status.state.name
        if state == "DELETING":
            entry.deleting_reads += 1
            if entry.deleting_reads > self.delete_reads:
                del self.entries[key]
                return None
        elif state == "CREATING":
            entry.reads += 1
            if entry.reads >= self.ready_after:
                if entry.goes_error:
                    self._set_state(entry.cluster, "ERROR", "Initialization action failed: dask.sh exit 1")
                else:
                    self._set_state(entry.cluster, "RUNNING", "")
        return clusters.Cluster(entry.cluster)

    @staticmethod
    def _set_state(cluster: clusters.Cluster, state: str, detail: str) -> None:
        if cluster.status.state.name:
            cluster.status_history.append(clusters.ClusterStatus(cluster.status))
        cluster.status = clusters.ClusterStatus(
            state=clusters.ClusterStatus.State[state], detail=detail, state_start_time=datetime.now(UTC)
        )

    def create_cluster(self, request: clusters.CreateClusterRequest) -> operations_pb2.Operation:
        self._record("create_cluster", request)
        with self.lock:
            key = (request.project_id, request.region, request.cluster.cluster_name)
            entry = self.entries.get(key)
            if entry is not None:
                if request.request_id and entry.request_id == request.request_id:
                    return self._operation(request, "create")  # same request_id: the same operation
                raise gexc.AlreadyExists(f"Already exists: Failed to create cluster: {key[2]}")
            cluster = clusters.Cluster(request.cluster)
            cluster.cluster_uuid = str(uuid.uuid4())
            config = cluster.config
            if not config.gce_cluster_config.zone_uri:
                config.gce_cluster_config.zone_uri = (
                    f"https://www.googleapis.com/compute/v1/projects/{request.project_id}/zones/"
                    f"{self.default_zone}"
                )
            image = config.software_config.image_version
            config.software_config.image_version = RESOLVED_IMAGE.get(image, image or "2.2.57-debian12")
            name = cluster.cluster_name
            config.master_config.instance_names = [f"{name}-m"]
            config.worker_config.instance_names = [
                f"{name}-w-{i}" for i in range(config.worker_config.num_instances)
            ]
            config.secondary_worker_config.instance_names = [
                f"{name}-sw-{i}" for i in range(config.secondary_worker_config.num_instances)
            ]
            cluster.labels.update(
                {"goog-dataproc-cluster-name": name, "goog-dataproc-cluster-uuid": cluster.cluster_uuid}
            )
            self._set_state(cluster, "CREATING", "")
            goes_error = self.error_next_creates > 0
            self.error_next_creates -= int(goes_error)
            self.entries[key] = _Entry(cluster, request.request_id, goes_error=goes_error)
            return self._operation(request, "create")

    def delete_cluster(self, request: clusters.DeleteClusterRequest) -> operations_pb2.Operation:
        self._record("delete_cluster", request)
        with self.lock:
            key = (request.project_id, request.region, request.cluster_name)
            entry = self.entries.get(key)
            if entry is None:
                raise gexc.NotFound(
                    f"Not found: Cluster projects/{key[0]}/regions/{key[1]}/clusters/{key[2]}"
                )
            if entry.cluster.status.state.name != "DELETING":
                self._set_state(entry.cluster, "DELETING", "")
            return self._operation(request, "delete")

    def get_cluster(self, request: clusters.GetClusterRequest) -> clusters.Cluster:
        self._record("get_cluster", request)
        with self.lock:
            found = self._observe((request.project_id, request.region, request.cluster_name))
        if found is None:
            raise gexc.NotFound(f"Not found: Cluster {request.cluster_name}")
        return found

    def list_clusters(self, request: clusters.ListClustersRequest) -> clusters.ListClustersResponse:
        self._record("list_clusters", request)
        wanted = _parse_filter(request.filter)
        out = []
        with self.lock:
            for key in list(self.entries):
                if key[:2] != (request.project_id, request.region):
                    continue
                current = self.entries[key].cluster
                if not _matches(current, wanted):
                    continue
                observed = self._observe(key)
                if observed is not None and _matches(observed, wanted):
                    out.append(observed)
        return clusters.ListClustersResponse(clusters=out)

    def _operation(self, request: Any, verb: str) -> operations_pb2.Operation:
        return operations_pb2.Operation(
            name=f"projects/{request.project_id}/regions/{request.region}/operations/{verb}-{uuid.uuid4()}",
            done=False,
        )

    # -- autoscaling policies ------------------------------------------------------------------
    def get_policy(self, request: autoscaling_policies.GetAutoscalingPolicyRequest) -> Any:
        self._record("get_autoscaling_policy", request)
        policy = self.policies.get(request.name)
        if policy is None:
            raise gexc.NotFound(f"Not found: {request.name}")
        return autoscaling_policies.AutoscalingPolicy(policy)

    def create_policy(self, request: autoscaling_policies.CreateAutoscalingPolicyRequest) -> Any:
        self._record("create_autoscaling_policy", request)
        name = f"{request.parent}/autoscalingPolicies/{request.policy.id}"
        if name in self.policies:
            raise gexc.AlreadyExists(f"Already exists: {name}")
        policy = autoscaling_policies.AutoscalingPolicy(request.policy)
        policy.name = name
        self.policies[name] = policy
        return autoscaling_policies.AutoscalingPolicy(policy)

    def update_policy(self, request: autoscaling_policies.UpdateAutoscalingPolicyRequest) -> Any:
        self._record("update_autoscaling_policy", request)
        self.policies[request.policy.name] = autoscaling_policies.AutoscalingPolicy(request.policy)
        return autoscaling_policies.AutoscalingPolicy(request.policy)


def _parse_filter(text: str) -> list[tuple[str, str]]:
    """``field = value AND ...`` (the subset of Dataproc's filter syntax the backend uses)."""
    clauses = []
    for part in (text or "").split(" AND "):
        if part.strip():
            key, _, value = part.partition("=")
            clauses.append((key.strip(), value.strip().strip('"')))
    return clauses


def _matches(cluster: clusters.Cluster, wanted: list[tuple[str, str]]) -> bool:
    state = cluster.status.state.name
    for key, value in wanted:
        if key.startswith("labels."):
            label = key.removeprefix("labels.")
            if value == "*" and label in cluster.labels:
                continue
            if cluster.labels.get(label) != value:
                return False
        elif key == "status.state":
            if value == "ACTIVE" and state not in ACTIVE:
                return False
            if value == "INACTIVE" and state in ACTIVE:
                return False
            if value not in ("ACTIVE", "INACTIVE") and state != value:
                return False
        elif key in ("clusterName", "cluster_name"):
            if cluster.cluster_name != value:
                return False
        else:
            raise gexc.InvalidArgument(f"unsupported filter field {key!r}")
    return True


class _FakeOperations:
    """The long-running-operations client the clients attach to each Operation (never polled)."""

    def __init__(self, fake: FakeDataproc) -> None:
        self.fake = fake

    def get_operation(self, name: str, *args: Any, **kwargs: Any) -> operations_pb2.Operation:
        self.fake._record("get_operation", operations_pb2.GetOperationRequest(name=name))
        return operations_pb2.Operation(name=name, done=False)

    def cancel_operation(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.fake._record("cancel_operation", operations_pb2.CancelOperationRequest(name=name))

    def delete_operation(self, name: str, *args: Any, **kwargs: Any) -> None:  # pragma: no cover
        self.fake._record("delete_operation", operations_pb2.DeleteOperationRequest(name=name))


def _rpc(handler: Callable[[Any], Any]) -> Callable[..., Any]:
    def call(request: Any, timeout: Any = None, metadata: Any = (), **_: Any) -> Any:
        return handler(request)

    return call


def _unsupported(name: str) -> Callable[..., Any]:
    def call(request: Any, *args: Any, **kwargs: Any) -> Any:
        raise gexc.MethodNotImplemented(f"the fake Dataproc does not implement {name}")

    return call


def _rpc_property(name: str) -> property:
    """A transport RPC attribute: the callable the fake registered under ``name``."""
    return property(lambda self: self._rpcs.get(name) or _unsupported(name))


class FakeClusterTransport(ClusterControllerTransport):
    """ClusterController transport whose RPCs are answered by a :class:`FakeDataproc`."""

    def __init__(self, fake: FakeDataproc) -> None:
        self._rpcs: dict[str, Callable[..., Any]] = {
            "create_cluster": _rpc(fake.create_cluster),
            "delete_cluster": _rpc(fake.delete_cluster),
            "get_cluster": _rpc(fake.get_cluster),
            "list_clusters": _rpc(fake.list_clusters),
        }
        super().__init__(host="dataproc.fake", credentials=AnonymousCredentials())
        self.fake = fake
        self._ops = _FakeOperations(fake)
        self._prep_wrapped_messages(DEFAULT_CLIENT_INFO)

    def close(self) -> None:
        pass

    @property
    def kind(self) -> str:
        return "fake"

    @property
    def operations_client(self) -> Any:
        return self._ops


class FakePolicyTransport(AutoscalingPolicyServiceTransport):
    """AutoscalingPolicyService transport answered by a :class:`FakeDataproc`."""

    def __init__(self, fake: FakeDataproc) -> None:
        self._rpcs: dict[str, Callable[..., Any]] = {
            "get_autoscaling_policy": _rpc(fake.get_policy),
            "create_autoscaling_policy": _rpc(fake.create_policy),
            "update_autoscaling_policy": _rpc(fake.update_policy),
        }
        super().__init__(host="dataproc.fake", credentials=AnonymousCredentials())
        self._prep_wrapped_messages(DEFAULT_CLIENT_INFO)

    def close(self) -> None:
        pass

    @property
    def kind(self) -> str:
        return "fake"


_COMMON = ("get_iam_policy", "set_iam_policy", "test_iam_permissions", "cancel_operation",
           "delete_operation", "get_operation", "list_operations")  # fmt: skip
for _name in ("create_cluster", "delete_cluster", "get_cluster", "list_clusters", "update_cluster",
              "stop_cluster", "start_cluster", "diagnose_cluster", *_COMMON):  # fmt: skip
    setattr(FakeClusterTransport, _name, _rpc_property(_name))
for _name in ("create_autoscaling_policy", "update_autoscaling_policy", "get_autoscaling_policy",
              "list_autoscaling_policies", "delete_autoscaling_policy", *_COMMON):  # fmt: skip
    setattr(FakePolicyTransport, _name, _rpc_property(_name))
