"""Facts read back from a created Dataproc cluster (``google.cloud.dataproc_v1.Cluster``).

Pure functions over the API object: no calls, no resources created.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def zone_of(cluster: Any) -> str | None:
    """The cluster's zone name (from its zone URI), or None when Dataproc chose none yet."""
    uri = cluster.config.gce_cluster_config.zone_uri
    return uri.rsplit("/", 1)[-1] if uri else None


def state_times(cluster: Any) -> dict[str, datetime]:
    """When the cluster entered each state (history and current), as aware datetimes."""
    times: dict[str, datetime] = {}
    for status in [*cluster.status_history, cluster.status]:
        start = status.state_start_time
        if start:
            times.setdefault(status.state.name, start if start.tzinfo else start.replace(tzinfo=UTC))
    return times
