"""The ``dataproc_dask`` backend's metadata: the ``spec.options`` it accepts and its Connection form
(docs/architecture.md, "Adding a backend")."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from airflow_provider_runners.core.backend import ConnField
from airflow_provider_runners.exceptions import RunnerSpecError

if TYPE_CHECKING:
    from airflow_provider_runners.core.catalog import ResolvedSpec
    from airflow_provider_runners.core.specs import RunnerSpec

REGION_RE = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")
OPTION_KEYS = frozenset({"workers", "min_workers", "max_workers", "secondary_workers"})
PREEMPTIBILITY = ("SPOT", "PREEMPTIBLE", "NON_PREEMPTIBLE")


class DataprocDaskOptions(BaseModel):
    """``spec.options`` of a Dataproc cluster: primary workers within the profile's bounds."""

    model_config = ConfigDict(extra="forbid")
    workers: int | None = None
    min_workers: int | None = None
    max_workers: int | None = None
    secondary_workers: int | None = None


CONN_FIELDS: dict[str, ConnField] = {
    "project_id": ConnField("Project id", placeholder="my-project"),
    "region": ConnField("Region", placeholder="europe-west1"),
    "zone": ConnField("Zone", placeholder="europe-west1-b"),
    "subnetwork_uri": ConnField(
        "Subnetwork URI", placeholder="projects/my-project/regions/europe-west1/subnetworks/private"
    ),
    "service_account": ConnField("Service account", placeholder="dask@my-project.iam.gserviceaccount.com"),
    "kms_key_name": ConnField(
        "KMS key", placeholder="projects/my-project/locations/europe-west1/keyRings/r/cryptoKeys/k"
    ),
    "gcp_conn_id": ConnField(
        "Google Connection", "Credentials come from this Connection.", placeholder="google_cloud_default"
    ),
}


def worker_bounds(spec: RunnerSpec, resolved: ResolvedSpec | None = None) -> tuple[int, int, int]:
    """(initial, min, max) primary workers: the profile's, overridden by spec options within its bounds.

    Raises :class:`RunnerSpecError` naming the option — called at DAG parse time by
    :func:`validate_spec` and again at create time.
    """
    unknown = set(spec.options) - OPTION_KEYS
    if unknown:
        raise RunnerSpecError(
            f"spec.options: {sorted(unknown)} not supported by dataproc_dask; allowed: {sorted(OPTION_KEYS)}"
        )
    profile = resolved.profile if resolved is not None else None
    lo = profile.min_workers if profile and profile.min_workers is not None else 2
    hi = profile.max_workers if profile and profile.max_workers is not None else max(lo, 10)
    initial = profile.workers if profile and profile.workers is not None else lo
    values = {"workers": initial, "min_workers": lo, "max_workers": hi}
    for key in {"workers", "min_workers", "max_workers"} & set(spec.options):
        value = spec.options[key]
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise RunnerSpecError(
                f"spec.options.{key}: {value!r} is out of range; allowed: integers {lo} to {hi} "
                f"(profile {spec.profile!r})"
            )
        values[key] = value
    if not values["min_workers"] <= values["workers"] <= values["max_workers"]:
        raise RunnerSpecError(
            f"spec.options.workers: {values['workers']} is outside min_workers..max_workers "
            f"({values['min_workers']}..{values['max_workers']})"
        )
    if values["min_workers"] < 2:
        raise RunnerSpecError("spec.options.min_workers: Dataproc standard clusters need at least 2 workers")
    return values["workers"], values["min_workers"], values["max_workers"]


def secondary_workers(spec: RunnerSpec, resolved: ResolvedSpec | None = None) -> tuple[int, str]:
    """(count, preemptibility) of the secondary workers (docs/dataproc.md, "Spot secondary workers").

    The catalog profile's ``options.secondary_workers`` (default 0) and
    ``options.secondary_preemptibility`` (``SPOT`` default, ``PREEMPTIBLE``, ``NON_PREEMPTIBLE``);
    ``spec.options.secondary_workers`` overrides the count within 0..``options.max_secondary_workers``
    (default: the profile's ``max_workers``, else 10). Primary workers and the master are always
    on-demand, so ``spec.spot=True`` needs at least one secondary worker. RunnerSpecError names the field.
    """
    opts = resolved.profile.options if resolved is not None else {}
    preempt = str(opts.get("secondary_preemptibility", "SPOT")).upper()
    if preempt not in PREEMPTIBILITY:
        raise RunnerSpecError(
            f"profile {spec.profile!r} options.secondary_preemptibility: {preempt!r}; allowed: {list(PREEMPTIBILITY)}"
        )
    default = opts.get("secondary_workers", 0)
    profile = resolved.profile if resolved is not None else None
    hi = opts.get("max_secondary_workers", profile.max_workers if profile and profile.max_workers else 10)
    count = spec.options.get("secondary_workers", default)
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= max(hi, default):
        raise RunnerSpecError(
            f"spec.options.secondary_workers: {count!r} is out of range; allowed: integers 0 to {max(hi, default)} "
            f"(profile {spec.profile!r})"
        )
    if spec.spot and (count == 0 or preempt == "NON_PREEMPTIBLE"):
        raise RunnerSpecError(
            "spec.spot: Dataproc runs the master and primary workers on-demand; spot needs spot secondary "
            f"workers (spec.options.secondary_workers >= 1, profile {spec.profile!r} secondary_preemptibility "
            f"SPOT or PREEMPTIBLE; now {count} x {preempt})"
        )
    return count, preempt


def validate_region(region: Any, field: str = "region") -> str:
    if not isinstance(region, str) or not REGION_RE.match(region):
        raise RunnerSpecError(f"{field}: {region!r} is not a GCP region; expected e.g. 'europe-west1'")
    return region


def validate_spec(
    spec: RunnerSpec | Mapping[str, Any], region: str | None = None, catalog_path: str | None = None
) -> RunnerSpec:
    """Parse-time check of a spec meant for ``dataproc_dask`` (profile, options) and a region.

    ``runner(...)`` / ``ProvisionRunnerOperator`` already run the same check at parse time
    (``check_resolved`` through ``check_spec``; docs/architecture.md, "Options are checked at
    parse time"), so DAG files need not call it; it is here for scripts and tests that check a
    spec (and a region) without building a DAG. Imports nothing from google.
    """
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.specs import RunnerSpec

    parsed = RunnerSpec.parse(spec)
    check_resolved(resolve_spec(parsed, backend="dataproc_dask", catalog_path=catalog_path))
    if region is not None:
        validate_region(region)
    return parsed


def check_resolved(resolved: ResolvedSpec) -> None:
    """A cloud profile (machine_type) and worker options within its bounds."""
    parsed = resolved.spec
    if not resolved.profile.machine_type:
        raise RunnerSpecError(
            f"spec.profile: {parsed.profile!r} in {resolved.environment!r} has no machine_type; "
            "dataproc_dask needs a cloud profile (e.g. 'standard' in 'dev' or 'prod')"
        )
    worker_bounds(parsed, resolved)
    secondary_workers(parsed, resolved)
