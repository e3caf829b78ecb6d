"""Kubernetes API clients for the ``kubernetes`` backend: authentication and a client-side rate limit.

**Authentication**, from the ``runners_kubernetes`` Connection, first match wins:

==============================  ==========================================================================
extras ``eks_cluster_name`` +   EKS: endpoint and CA from ``DescribeCluster``, bearer token signed for the
``region_name`` [+              cluster through the Amazon provider (``EksHook`` session,
``aws_conn_id``]                ``fetch_access_token_for_cluster``); renewed every 10 minutes (EKS
                                tokens live 15)
extra ``in_cluster: true``      the pod's service account (``load_incluster_config``)
extra ``kubeconfig``            a kubeconfig file (+ optional ``context``)
Connection ``host``             an API server URL; the Connection password, if any, is a bearer token
nothing                         the default kubeconfig (``~/.kube/config`` / ``$KUBECONFIG``)
==============================  ==========================================================================

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

    @property
    def mode(self) -> str:
        if self.eks_cluster_name:
            return "eks"
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
        elif self.mode == "in_cluster":
            k8s.config.load_incluster_config(client_configuration=cfg)
        elif self.mode == "kubeconfig":
            k8s.config.load_kube_config(
                config_file=self.kubeconfig, context=self.context, client_configuration=cfg
            )
        elif self.mode == "host":
            cfg.host = (self.host or "").rstrip("/")
            if self.token:
                cfg.api_key = {"authorization": self.token}
                cfg.api_key_prefix = {"authorization": "Bearer"}
            cfg.verify_ssl = self.verify_ssl
        else:
            k8s.config.load_kube_config(context=self.context, client_configuration=cfg)
        return cfg

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


def api_client(
    auth: ClusterAuth, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST
) -> tuple[Any, TokenBucket]:
    """A rate-limited ApiClient for ``auth``'s cluster and the cluster's shared bucket."""
    bucket = TokenBucket.shared(auth.cluster_key, qps, burst)
    return rate_limited_api_client(auth.configuration(), bucket), bucket
