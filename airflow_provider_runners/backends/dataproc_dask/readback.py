"""Facts read back from a created Dataproc cluster (``google.cloud.dataproc_v1.Cluster``) and
from the objects it ran (the init action in GCS), for evidence.

Pure functions over the API object, except :func:`gcs_object_facts` (one GCS metadata read);
nothing is created.
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


def gcs_object_facts(hook: Any, uri: str) -> dict[str, Any]:
    """Generation and hashes of the init action object, so evidence pins exactly what ran."""
    from airflow.providers.google.cloud.hooks.gcs import GCSHook, _parse_gcs_url

    bucket, name = _parse_gcs_url(uri)
    blob = GCSHook(gcp_conn_id=hook.gcp_conn_id).get_conn().bucket(bucket).get_blob(name)
    if blob is None:
        return {"uri": uri, "error": "object not found"}
    return {"uri": uri, "generation": blob.generation, "md5_hash": blob.md5_hash, "crc32c": blob.crc32c}
