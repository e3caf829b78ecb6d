"""OpenLineage for the work operators (``DaskJobOperator``, ``RunnerCommandOperator``; docs/openlineage.md).

Their ``get_openlineage_facets_on_complete`` returns an ``OperatorLineage`` with

- a run facet ``runner`` (:func:`runner_facet_fields`): backend, runner class, resource id,
  Connection, environment, profile, image and digest, lineage key, tags, and the work facts the
  task recorded (workers, exit code, seconds) — no secret (handles carry none, facts are filtered);
- inputs / outputs: the task's ``inlets`` / ``outlets`` that are Assets (or have a ``uri``), as
  OpenLineage datasets (:func:`dataset_names`: namespace ``scheme://authority``, name the path).

The openlineage provider is optional: everything is imported on call, and without it (or the
``openlineage-python`` client) the method returns None — Airflow's OpenLineage listener, which
calls it, exists only with that provider. It creates nothing and calls no API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.redact import is_secret_key

#: The run facet's key in ``OperatorLineage.run_facets``.
FACET_NAME = "runner"
PRODUCER = "https://github.com/airflow-provider-runners/airflow-provider-runners"
SCHEMA_URL = PRODUCER + "/blob/main/docs/openlineage.md#runner-run-facet"
#: Work facts copied into the facet (scalars only; the rest stays in the evidence ledger).
FACT_KEYS = (
    "workers",
    "nthreads",
    "callable",
    "job_seconds",
    "command_name",
    "exit_code",
    "timed_out",
    "cancelled",
    "command_seconds",
)


def runner_facet_fields(handle: RunnerHandle, facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``runner`` run facet's fields (camelCase, as OpenLineage facets are), without secrets."""
    details = handle.details
    digest = details.get("image_digest")
    fields: dict[str, Any] = {
        "backend": handle.backend,
        "runnerClass": str(handle.runner_class),
        "resourceId": handle.resource_id,
        "connId": handle.conn_id,
        "environment": handle.environment,
        "profile": handle.profile,
        "image": details.get("image") or details.get("image_ref"),
        "imageDigest": digest,
        "lineageKey": handle.lineage_key,
        "adopted": handle.adopted,
        "tags": {k: v for k, v in sorted(handle.tags.items()) if not is_secret_key(k)},
    }
    work = {
        key: (facts or {}).get(key)
        for key in FACT_KEYS
        if isinstance((facts or {}).get(key), str | int | float | bool) and not is_secret_key(key)
    }
    if work:
        fields["work"] = work
    return {k: v for k, v in fields.items() if v is not None}


def dataset_names(assets: Iterable[Any]) -> list[tuple[str, str]]:
    """``(namespace, name)`` per asset with a URI: ``s3://bucket/a/b`` -> ``("s3://bucket", "a/b")``;
    a URI without an authority (``file:///data/x``) -> ``("file", "/data/x")``. Others are skipped."""
    names = []
    for asset in assets:
        uri = getattr(asset, "uri", None) or (asset if isinstance(asset, str) else None)
        if not uri:
            continue
        parts = urlsplit(str(uri))
        if not parts.scheme:
            continue
        if parts.netloc:
            names.append((f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "/"))
        else:
            names.append((parts.scheme, parts.path))
    return names


def operator_lineage(
    handle: Any, facts: Mapping[str, Any] | None, inlets: Iterable[Any], outlets: Iterable[Any]
) -> Any:
    """``OperatorLineage`` for a work task, or None without the openlineage provider / client or
    without a usable handle (a task that failed before rendering it)."""
    try:
        import attr
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import Dataset
        from openlineage.client.facet_v2 import RunFacet
    except ImportError:
        return None
    try:
        runner = RunnerHandle.from_xcom(handle)
    except Exception:  # noqa: BLE001 - lineage must never fail the task
        return None
    fields = runner_facet_fields(runner, facts)
    facet_class = attr.make_class(
        "RunnerRunFacet", {name: attr.ib(default=None) for name in fields}, bases=(RunFacet,)
    )
    facet = facet_class(**fields)
    facet._producer = PRODUCER  # OpenLineage's own facet fields
    facet._schemaURL = SCHEMA_URL
    return OperatorLineage(
        inputs=[Dataset(namespace=ns, name=name) for ns, name in dataset_names(inlets)],
        outputs=[Dataset(namespace=ns, name=name) for ns, name in dataset_names(outlets)],
        run_facets={FACET_NAME: facet},
    )
