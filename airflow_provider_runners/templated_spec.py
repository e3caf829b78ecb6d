"""Specs with Jinja templates: ``{"profile": "{{ params.size }}"}``.

A spec whose values contain a template cannot be checked when the DAG is parsed (the value is not
known yet), so it is not: :class:`~airflow_provider_runners.operators.provision.ProvisionRunnerOperator`
keeps it as a template field and checks it against the catalog right after Airflow renders it,
before anything is created. A bad rendered value fails the task (no retry: the same value would
fail again) with the field, the rendered value, the template it came from and what is allowed.
A spec without templates is checked at parse time as before (a DAG import error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_runners.exceptions import RunnerSpecError

_MARKERS = ("{{", "{%")


def templates_in(value: Any, path: str = "spec") -> dict[str, str]:
    """``{"spec.profile": "{{ params.size }}"}``: every string holding a Jinja template."""
    found: dict[str, str] = {}
    if isinstance(value, str):
        if any(marker in value for marker in _MARKERS):
            found[path] = value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            found.update(templates_in(item, f"{path}.{key}"))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found.update(templates_in(item, f"{path}[{i}]"))
    return found


def template_of(spec: Any) -> dict[str, Any] | None:
    """The spec as a mapping to render when it holds templates, else None (check it now)."""
    return dict(spec) if isinstance(spec, Mapping) and templates_in(spec) else None


def parse_rendered(rendered: Mapping[str, Any], source: Mapping[str, Any], catalog_path: str | None) -> Any:
    """(RunnerSpec, ResolvedSpec) of a rendered spec; a bad value fails the task, naming it."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_runners.backends.registry import check_spec
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.specs import RunnerSpec

    try:
        spec = RunnerSpec.parse(rendered)
        resolved = resolve_spec(spec, backend=spec.backend, catalog_path=catalog_path)
        check_spec(resolved)  # the options, by the backend(s) that can serve the spec
        return spec, resolved
    except RunnerSpecError as exc:
        sources = ", ".join(
            f"{path} = {template!r}" for path, template in sorted(templates_in(source).items())
        )
        raise AirflowFailException(
            f"{exc}\n(rendered from the templates {sources}; nothing was created)"
        ) from exc
