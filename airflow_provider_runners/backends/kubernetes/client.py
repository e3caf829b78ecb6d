"""Kubernetes API clients for the ``kubernetes`` backend: authentication and a client-side rate limit.

**Authentication**, from the ``runners_kubernetes`` Connection, first match wins:

==============================  ==========================================================================
extras ``eks_cluster_name`` +   EKS: endpoint and CA from ``DescribeCluster``, bearer token signed for the
``region_name`` [+              cluster through the Amazon provider (``EksHook`` session,
``aws_conn_id``]                ``fetch_access_token_for_cluster``); renewed every 10 minutes (EKS
                                tokens live 15)
extra ``kubernetes_conn_id``    a cncf-kubernetes ``kubernetes`` Connection, read by ``KubernetesHook``
                                (its in-cluster / kube_config_path / kube_config / cluster_context)
extra ``in_cluster: true``      the pod's service account, through ``KubernetesHook(in_cluster=True)``
extra ``kubeconfig``            a kubeconfig file (+ optional ``context``), through ``KubernetesHook``
Connection ``host``             an API server URL; the Connection password, if any, is a bearer token
nothing                         ``KubernetesHook``'s default: in-cluster if in a pod, else the default
                                kubeconfig (``~/.kube/config`` / ``$KUBECONFIG``)
==============================  ==========================================================================

The cncf-kubernetes provider's ``KubernetesHook`` (docs/kubernetes.md) fills a ``Configuration``
of our own; the clients are then built here (rate limit, user agent). ``verify_ssl: false`` is
applied to that configuration only (the hook's ``disable_verify_ssl`` changes the process-wide
default).

**Rate limit.** The Python client has none (client-go's default is 5 QPS, burst 10). Every
request of every client this module makes goes through one token bucket per cluster per
process (``qps``/``burst`` extras, default 5/10), shared by all backends, triggers and
threads of the process; a request waits for a token instead of being sent.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from base64 import b64decode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from airflow_provider_runners.exceptions import ConnectionConfigError, MissingExtraError, RunnerSpecError

log = logging.getLogger(__name__)

DEFAULT_QPS = 5.0
DEFAULT_BURST = 10
EKS_TOKEN_RENEW_S = 600.0
USER_AGENT = "airflow-provider-runners"


@dataclass
class TokenBucket:
    """A thread-safe token bucket: ``qps`` tokens per second, at most ``burst`` saved up."""

    qps: float
    burst: int
    tokens: float = field(init=False)
    updated: float = field(init=False, default_factory=time.monotonic)
    requests: int = field(init=False, default=0)
    waited_s: float = field(init=False, default=0.0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)

    _buckets: ClassVar[dict[str, TokenBucket]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __post_init__(self) -> None:
        if self.qps <= 0 or self.burst < 1:
            raise RunnerSpecError(f"qps/burst: {self.qps}/{self.burst}; allowed: qps > 0 and burst >= 1")
        self.tokens = float(self.burst)

    @classmethod
    def shared(cls, key: str, qps: float, burst: int) -> TokenBucket:
        """The process-wide bucket of one cluster (the first caller's qps/burst win)."""
        with cls._registry_lock:
            bucket = cls._buckets.get(key)
            if bucket is None:
                bucket = cls._buckets[key] = cls(qps, burst)
            return bucket

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.qps)
                self.updated = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    self.requests += 1
                    self.waited_s += waited
                    return waited
                delay = (1.0 - self.tokens) / self.qps
            time.sleep(delay)
            waited += delay


def _kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError as exc:
        raise MissingExtraError("kubernetes", "kubernetes", "kubernetes") from exc
    return kubernetes


_CLIENT_CLASS: list[Any] = []


def rate_limited_api_client(configuration: Any, bucket: TokenBucket) -> Any:
    """A ``kubernetes.client.ApiClient`` whose every HTTP request first takes a token from ``bucket``."""
    if not _CLIENT_CLASS:
        k8s = _kubernetes()

        class RateLimitedApiClient(k8s.client.ApiClient):  # type: ignore[name-defined]
            runners_bucket: TokenBucket

            def request(self, *args: Any, **kwargs: Any) -> Any:
                self.runners_bucket.acquire()
                return super().request(*args, **kwargs)

        _CLIENT_CLASS.append(RateLimitedApiClient)
    api = _CLIENT_CLASS[0](configuration)
    api.runners_bucket = bucket
    api.user_agent = USER_AGENT
    return api


@dataclass(frozen=True)
class ClusterAuth:
    """How to reach one cluster, from a Connection's fields and extras (see the module docstring)."""

    conn_id: str
    host: str | None = None
    token: str | None = field(default=None, repr=False)
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    eks_cluster_name: str | None = None
    region_name: str | None = None
    aws_conn_id: str | None = "aws_default"
    verify_ssl: bool = True
    kubernetes_conn_id: str | None = None

    @classmethod
    def from_config(cls, config: Any) -> ClusterAuth:
        """From a ``runners_kubernetes`` Connection (a ``ConnectionConfig``)."""
        extra = config.extra
        host = config.host
        return cls(
            conn_id=config.conn_id,
            host=host if not host or "://" in host else f"https://{host}",
            token=config.password or None,
            kubeconfig=extra.get("kubeconfig") or None,
            context=extra.get("context") or None,
            in_cluster=str(extra.get("in_cluster", "")).lower() in ("1", "true", "yes"),
            eks_cluster_name=extra.get("eks_cluster_name") or None,
            region_name=extra.get("region_name") or None,
            aws_conn_id=extra.get("aws_conn_id") or "aws_default",
            verify_ssl=str(extra.get("verify_ssl", "true")).lower() not in ("0", "false", "no"),
            kubernetes_conn_id=extra.get("kubernetes_conn_id") or None,
        )

    @property
    def mode(self) -> str:
        if self.eks_cluster_name:
            return "eks"
        if self.kubernetes_conn_id:
            return "kubernetes_conn"
        if self.in_cluster:
            return "in_cluster"
        if self.kubeconfig:
            return "kubeconfig"
        return "host" if self.host else "default_kubeconfig"

    @property
    def cluster_key(self) -> str:
        """Identifies the cluster for the shared rate limiter and the status poller."""
        if self.eks_cluster_name:
            return f"eks:{self.region_name}:{self.eks_cluster_name}"
        if self.kubernetes_conn_id:
            return f"kubernetes_conn:{self.kubernetes_conn_id}"
        if self.in_cluster:
            return "in_cluster"
        if self.kubeconfig:
            return f"kubeconfig:{self.kubeconfig}:{self.context or ''}"
        return f"host:{self.host or 'default'}"

    @property
    def cluster_name(self) -> str:
        """A readable cluster name for evidence."""
        return self.eks_cluster_name or self.context or (self.host or self.mode)

    def configuration(self) -> Any:
        """A ``kubernetes.client.Configuration`` for this cluster (reads files / calls AWS)."""
        k8s = _kubernetes()
        cfg = k8s.client.Configuration()
        if self.mode == "eks":
            self._configure_eks(cfg)
        elif self.mode == "host":
            cfg.host = (self.host or "").rstrip("/")
            if self.token:
                cfg.api_key = {"authorization": self.token}
                cfg.api_key_prefix = {"authorization": "Bearer"}
        else:
            cfg = self._configure_with_kubernetes_hook(cfg)
        if not self.verify_ssl:
            cfg.verify_ssl = False
        return cfg

    def _configure_with_kubernetes_hook(self, cfg: Any) -> Any:
        """In-cluster, kubeconfig, a ``kubernetes`` Connection or the default: cncf-kubernetes'
        ``KubernetesHook`` loads it (``get_conn``); its client's configuration is returned."""
        try:
            from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
        except ImportError as exc:
            raise MissingExtraError(
                "apache-airflow-providers-cncf-kubernetes", "kubernetes", "kubernetes"
            ) from exc
        # The hook's in-cluster path loads into the process default and ignores a configuration
        # passed in (its client gets a copy of the default): pass none where it may be taken.
        if self.mode == "kubernetes_conn":
            hook = KubernetesHook(conn_id=self.kubernetes_conn_id)
        else:
            hook = KubernetesHook(
                conn_id=None,
                kubernetes_conn_id=None,  # not the provider's kubernetes_default: this Connection only
                client_configuration=None if self.mode == "in_cluster" else cfg,
                in_cluster=True if self.mode == "in_cluster" else None,
                config_file=self.kubeconfig,
                cluster_context=self.context,
            )
        try:
            client = hook.get_conn()
        except Exception as exc:
            raise ConnectionConfigError(
                f"Connection {self.conn_id!r}: Kubernetes auth ({self.mode}) through KubernetesHook failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return client.configuration

    def _configure_eks(self, cfg: Any) -> None:
        try:
            from airflow.providers.amazon.aws.hooks.eks import EksHook
            from airflow.providers.amazon.aws.utils.eks_get_token import fetch_access_token_for_cluster
        except ImportError as exc:
            raise MissingExtraError("apache-airflow-providers-amazon", "amazon", "kubernetes") from exc
        if not self.region_name:
            raise ConnectionConfigError(
                f"Connection {self.conn_id!r} extra region_name: required with eks_cluster_name"
            )
        hook = EksHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        cluster = hook.conn.describe_cluster(name=self.eks_cluster_name)["cluster"]
        cfg.host = cluster["endpoint"]
        ca = cluster.get("certificateAuthority", {}).get("data")
        if ca:
            # The CA certificate is public; one file per cluster, reused by every client.
            path = Path(tempfile.gettempdir()) / f"runners-eks-{self.region_name}-{self.eks_cluster_name}.crt"
            path.write_bytes(b64decode(ca))
            cfg.ssl_ca_cert = str(path)
        session = hook.get_session()
        endpoint = hook.conn.meta.endpoint_url
        sts_url = (
            f"https://sts.{self.region_name}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"
            if "amazonaws.com" in endpoint
            else f"{endpoint.rstrip('/')}/?Action=GetCallerIdentity&Version=2011-06-15"
        )
        name = self.eks_cluster_name or ""
        # None until the first token: time.monotonic() counts from boot, so a 0.0 start would skip
        # the first fetch on a host up for less than EKS_TOKEN_RENEW_S.
        issued: list[float | None] = [None]

        def refresh(config: Any) -> None:
            last = issued[0]
            if last is not None and time.monotonic() - last < EKS_TOKEN_RENEW_S:
                return
            token = fetch_access_token_for_cluster(name, sts_url, self.region_name or "", session=session)
            config.api_key = {"authorization": token}
            config.api_key_prefix = {"authorization": "Bearer"}
            issued[0] = time.monotonic()

        refresh(cfg)
        cfg.refresh_api_key_hook = refresh


class ClusterProbe:
    """``Backend.probe`` for the kubernetes backend (mixed into it): one pod LIST with ``limit=1``
    in the Connection's namespace — needs the API server, valid credentials and read access."""

    auth: ClusterAuth
    namespace: str

    def _call(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError

    def probe(self) -> str:
        self._call("list_namespaced_pod", self.namespace, limit=1)
        return f"API server reachable ({self.auth.mode}: {self.auth.cluster_name}); pods in {self.namespace!r} readable"


def api_client(
    auth: ClusterAuth, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST
) -> tuple[Any, TokenBucket]:
    """A rate-limited ApiClient for ``auth``'s cluster and the cluster's shared bucket."""
    bucket = TokenBucket.shared(auth.cluster_key, qps, burst)
    return rate_limited_api_client(auth.configuration(), bucket), bucket
