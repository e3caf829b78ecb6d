"""The platform catalog: what a runner spec may ask for, per environment.

A catalog is one YAML file (schema below, example in ``catalogs/default.yaml``)::

    version: 1
    default_environment: local
    environments:
      <env>:
        profiles: {<runner_class>: {<profile>: Profile}}
        network_profiles: {<name>: NetworkProfile}
        default_network_profile: <name>
        prices: {<price key>: Price}          # overrides of the top-level prices
        budgets: {tenant: {<tenant>: usd_per_hour}, pipeline: {<pipeline>: usd_per_hour}}
    images: {<name>: {<version>: ImageVersion}}          # approved images, pinned by digest
    driver_bundles: {<name>: {<version>: DriverBundle}}  # pinned driver bundles
    prices: {<price key>: Price}                         # $/hour, on-demand and spot
    billing: {<backend>: BillingRule}                    # minimum billed seconds, per-vCPU fees

Governance = the spec must resolve: :meth:`Catalog.resolve` returns a :class:`ResolvedSpec`
or raises :class:`~airflow_provider_runners.exceptions.RunnerSpecError` naming the field,
the value and the allowed values. ``airflow-runners catalog validate FILE`` checks a file.

Which file is used: ``[runners] catalog_path`` in the Airflow config (or the environment
variable ``AIRFLOW__RUNNERS__CATALOG_PATH``); the shipped default otherwise.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airflow_provider_runners.core.specs import LABEL_RE, RUNNER_CLASSES, RunnerClass, RunnerSpec, split_ref
from airflow_provider_runners.exceptions import CatalogError, RunnerSpecError

DEFAULT_CATALOG = Path(__file__).parent.parent / "catalogs" / "default.yaml"
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def effective_vcpus(
    vcpus: float | None, workers: int | None = None, threads_per_worker: int | None = None
) -> float | None:
    """vCPUs of one machine: ``vcpus``, else workers x threads per worker (a Dask cluster), else
    unknown. The one rule for prices, fees and evidence (:attr:`Profile.effective_vcpus`, the
    local Dask backend's facts)."""
    if vcpus is not None:
        return vcpus
    if workers is not None:
        return workers * (threads_per_worker or 1)
    return None


class Profile(_Model):
    """A sizing profile. Common fields are typed; backend-specific ones go in ``options``."""

    description: str = ""
    machine_type: str | None = None
    vcpus: float | None = Field(default=None, gt=0)
    memory_gib: float | None = Field(default=None, gt=0)
    disk_gib: int | None = Field(default=None, gt=0)
    workers: int | None = Field(default=None, ge=0)
    min_workers: int | None = Field(default=None, ge=0)
    max_workers: int | None = Field(default=None, ge=0)
    threads_per_worker: int | None = Field(default=None, ge=1)
    requires_approval: bool = False
    price_key: str | None = Field(default=None, description="Key in prices; defaults to machine_type.")
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def effective_vcpus(self) -> float | None:
        """vCPUs of one machine of this profile: ``vcpus``, else workers x threads per worker (a
        Dask profile), else unknown (:func:`effective_vcpus`)."""
        return effective_vcpus(self.vcpus, self.workers, self.threads_per_worker)

    @model_validator(mode="after")
    def _worker_bounds(self) -> Profile:
        lo, hi = self.min_workers, self.max_workers
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_workers ({lo}) is greater than max_workers ({hi})")
        return self


class NetworkProfile(_Model):
    """Where a runner's traffic may go (VPN, private VPC, PrivateLink, public egress; docs/ec2.md)."""

    description: str = ""
    kind: Literal["local", "private", "vpn", "privatelink", "public"]
    public_egress: bool = False
    options: dict[str, Any] = Field(default_factory=dict)


class ImageVersion(_Model):
    """An approved image version, pinned by digest."""

    digest: str
    uri: str | None = None
    runner_classes: tuple[RunnerClass, ...] = RUNNER_CLASSES  # type: ignore[assignment]
    approved: bool = True
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not _DIGEST_RE.match(value):
            raise ValueError(f"{value!r} is not a digest; expected 'sha256:' and 64 hex digits")
        return value


class DriverBundle(_Model):
    """A pinned driver bundle version (JDBC/ODBC drivers, vendor clients)."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    uri: str | None = None


class Price(_Model):
    """Hourly price in USD."""

    on_demand: float = Field(ge=0)
    spot: float | None = Field(default=None, ge=0)


class BillingRule(_Model):
    """How a backend bills: minimum seconds, and an extra fee per vCPU-hour (e.g. Dataproc $0.010)."""

    minimum_seconds: int = Field(default=60, ge=0)
    per_vcpu_hour_fee: float = Field(default=0.0, ge=0)


class Budgets(_Model):
    """$/hour ceilings on the live runners of a tenant or a pipeline (``cost/budget.py`` enforces them).

    A provision whose runner would take the sum of the live runners' rates (its own included)
    over any budget that applies to its tags is refused before anything is created.
    """

    tenant: dict[str, float] = Field(default_factory=dict)
    pipeline: dict[str, float] = Field(default_factory=dict)

    @field_validator("tenant", "pipeline")
    @classmethod
    def _limits(cls, value: dict[str, float]) -> dict[str, float]:
        for name, limit in value.items():
            if not LABEL_RE.match(name):
                raise ValueError(
                    f"{name!r} is not a tenant/pipeline tag value (label-safe: a-z, 0-9, '-', '_')"
                )
            if limit < 0:
                raise ValueError(f"budget for {name!r} is {limit}; a $/hour budget must be >= 0")
        return value

    def limits_for(self, tenant: str | None, pipeline: str | None) -> list[tuple[str, str, float]]:
        """``(scope, name, usd_per_hour)`` for every budget that applies to these tags."""
        found = []
        if tenant is not None and tenant in self.tenant:
            found.append(("tenant", tenant, self.tenant[tenant]))
        if pipeline is not None and pipeline in self.pipeline:
            found.append(("pipeline", pipeline, self.pipeline[pipeline]))
        return found


class Environment(_Model):
    profiles: dict[RunnerClass, dict[str, Profile]] = Field(default_factory=dict)
    network_profiles: dict[str, NetworkProfile] = Field(default_factory=dict)
    default_network_profile: str | None = None
    prices: dict[str, Price] = Field(default_factory=dict)
    budgets: Budgets = Budgets()

    @model_validator(mode="after")
    def _default_network_exists(self) -> Environment:
        name = self.default_network_profile
        if name is not None and name not in self.network_profiles:
            raise ValueError(
                f"default_network_profile {name!r} is not defined; defined: {sorted(self.network_profiles)}"
            )
        return self


class ResolvedSpec(_Model):
    """A spec after governance: every name replaced by the catalog entry it stands for."""

    spec: RunnerSpec
    environment: str
    profile: Profile
    network_profile_name: str | None
    network_profile: NetworkProfile | None
    image_name: str | None = None
    image_version: str | None = None
    image: ImageVersion | None = None
    driver_bundles: dict[str, DriverBundle] = Field(default_factory=dict)
    price: Price | None = None
    billing: BillingRule = BillingRule()

    @property
    def hourly_rate(self) -> float:
        """USD per hour of this runner (spot price if asked and known), fees excluded."""
        if self.price is None:
            return 0.0
        if self.spec.spot and self.price.spot is not None:
            return self.price.spot
        return self.price.on_demand


class Catalog(_Model):
    version: Literal[1] = 1
    default_environment: str
    environments: dict[str, Environment]
    images: dict[str, dict[str, ImageVersion]] = Field(default_factory=dict)
    driver_bundles: dict[str, dict[str, DriverBundle]] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)
    billing: dict[str, BillingRule] = Field(default_factory=dict)
    #: EC2 warm pools for every runners_ec2 Connection (docs/ec2.md); a Connection's own
    #: ``warm_pools`` entry of the same name wins. Checked by backends/ec2/warm_pool.py.
    warm_pools: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_environment_exists(self) -> Catalog:
        if self.default_environment not in self.environments:
            raise ValueError(
                f"default_environment {self.default_environment!r} is not defined; "
                f"defined: {sorted(self.environments)}"
            )
        return self

    def resolve(self, spec: RunnerSpec, backend: str | None = None) -> ResolvedSpec:
        """Resolve every name in ``spec``; raise RunnerSpecError naming field, value, allowed values."""
        env_name = spec.environment or configured_environment() or self.default_environment
        env = self.environments.get(env_name)
        if env is None:
            raise _not_allowed("spec.environment", env_name, self.environments)
        profiles = env.profiles.get(spec.runner_class, {})
        profile = profiles.get(spec.profile)
        if profile is None:
            raise _not_allowed(
                "spec.profile",
                spec.profile,
                profiles,
                f"for runner_class {spec.runner_class!r} in {env_name!r}",
            )
        if profile.requires_approval and not spec.approval_ref:
            raise RunnerSpecError(
                f"spec.approval_ref: profile {spec.profile!r} requires a governance approval reference; "
                "set approval_ref (got None)"
            )
        net_name = spec.network_profile or env.default_network_profile
        network = None
        if net_name is not None:
            network = env.network_profiles.get(net_name)
            if network is None:
                raise _not_allowed("spec.network_profile", net_name, env.network_profiles, f"in {env_name!r}")
        image_name = image_version = image = None
        if spec.image:
            image_name, image_version = split_ref(spec.image, "image")
            versions = self.images.get(image_name)
            if versions is None:
                raise _not_allowed(
                    "spec.image",
                    spec.image,
                    {f"{n}@{v}" for n, vs in self.images.items() for v, i in vs.items() if i.approved},
                )
            image = versions.get(image_version)
            if image is None or not image.approved:
                approved = sorted(f"{image_name}@{v}" for v, i in versions.items() if i.approved)
                raise RunnerSpecError(
                    f"spec.image: {spec.image!r} is not an approved image; approved: {approved}"
                )
            if spec.runner_class not in image.runner_classes:
                raise RunnerSpecError(
                    f"spec.image: {spec.image!r} is not approved for runner_class {spec.runner_class!r}; "
                    f"approved for: {list(image.runner_classes)}"
                )
        bundles = {}
        for ref in spec.driver_bundles:
            name, version = split_ref(ref, "driver bundle")
            entry = self.driver_bundles.get(name, {}).get(version)
            if entry is None:
                allowed = sorted(f"{n}@{v}" for n, vs in self.driver_bundles.items() for v in vs)
                raise RunnerSpecError(
                    f"spec.driver_bundles: {ref!r} is not a pinned bundle; allowed: {allowed}"
                )
            bundles[ref] = entry
        price_key = profile.price_key or profile.machine_type
        price = None
        if price_key is not None:
            price = env.prices.get(price_key) or self.prices.get(price_key)
        return ResolvedSpec(
            spec=spec,
            environment=env_name,
            profile=profile,
            network_profile_name=net_name,
            network_profile=network,
            image_name=image_name,
            image_version=image_version,
            image=image,
            driver_bundles=bundles,
            price=price,
            billing=self.billing.get(backend or "", BillingRule()),
        )


def _not_allowed(field: str, value: str, allowed: Any, where: str = "") -> RunnerSpecError:
    where = f" {where}" if where else ""
    return RunnerSpecError(f"{field}: {value!r} is not defined{where}; allowed: {sorted(allowed)}")


def configured_environment() -> str | None:
    """``[runners] environment`` from the Airflow config / environment, if set."""
    from airflow_provider_runners.core.settings import setting  # pydantic-settings: not at DAG import

    return setting("environment")


def configured_catalog_path() -> Path:
    """``[runners] catalog_path`` if set, else the shipped default catalog."""
    from airflow_provider_runners.core.settings import setting

    value = setting("catalog_path")
    return Path(value).expanduser() if value else DEFAULT_CATALOG


def load_catalog(path: str | os.PathLike[str] | None = None) -> Catalog:
    """Load and validate a catalog file (parsed once per distinct content)."""
    resolved = Path(path).expanduser() if path is not None else configured_catalog_path()
    try:
        text = resolved.read_text()
    except OSError as exc:
        raise CatalogError(f"catalog {str(resolved)!r} cannot be read: {exc.strerror}") from None
    return _load_catalog_cached(str(resolved), text)


@lru_cache(maxsize=8)
def _load_catalog_cached(path: str, text: str) -> Catalog:
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise CatalogError(f"catalog {path!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"catalog {path!r}: expected a mapping at the top level")
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        from airflow_provider_runners.core.specs import format_validation_error

        raise CatalogError(
            format_validation_error(exc, prefix="catalog").replace(
                "invalid runner spec", f"invalid catalog {path}"
            )
        ) from None


def resolve_spec(
    spec: RunnerSpec, backend: str | None = None, catalog_path: str | None = None
) -> ResolvedSpec:
    """Resolve ``spec`` against the configured (or given) catalog."""
    return load_catalog(catalog_path).resolve(spec, backend=backend)
