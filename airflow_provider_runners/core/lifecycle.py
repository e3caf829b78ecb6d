"""Adopt-or-replace: the retry-safe first step of every provision, shared by all backends.

A try first looks for a runner tagged with its task instance's lineage key (an earlier try
may have created one and died before finishing). Healthy (PENDING or READY): adopt it.
Broken (FAILED: an ERROR cluster, a terminated host, a CrashLoopBackOff pod): tear it down
first — it may still bill — then create anew with this try's attempt token.

And the other end: :func:`end_runners` tears down every runner of a lineage (known handles plus
whatever still carries the lineage tag) for whoever learns that a provision failed or was
killed, and :func:`record_end` writes the one terminal evidence entry for it
(docs/architecture.md, "A failed provision leaves nothing behind").
"""

from __future__ import annotations

import logging
from typing import Literal

from airflow_provider_runners.core.backend import Backend, ProvisionRequest
from airflow_provider_runners.core.handles import RunnerHandle

Acquisition = Literal["created", "adopted", "replaced"]
log = logging.getLogger(__name__)


def acquire(backend: Backend, request: ProvisionRequest) -> tuple[RunnerHandle, Acquisition]:
    """Return a handle for the request's lineage: adopted if healthy, else newly created; priced
    either way (:func:`priced`)."""
    existing = backend.find(request.lineage.key)
    if existing is not None:
        status = backend.status(existing)
        if status.is_healthy:
            log.info("adopting runner %s from an earlier try (%s)", existing.resource_id, status.message)
            return priced(existing.evolve(adopted=True), request), "adopted"
        log.warning(
            "runner %s from an earlier try is %s (%s): tearing it down before creating a new one",
            existing.resource_id,
            status.state.value,
            status.message,
        )
        backend.teardown(existing)
        return priced(backend.create(request), request), "replaced"
    return priced(backend.create(request), request), "created"


def priced(handle: RunnerHandle, request: ProvisionRequest) -> RunnerHandle:
    """``handle`` with its :class:`RunnerPricing`. Backends set it in ``create``; a runner adopted
    by its tags (``find``) has none, and is priced as the request's runner of the machines the
    backend found (``details.nodes`` / ``details.spot_nodes``: a Dataproc cluster's)."""
    if handle.pricing is not None:
        return handle
    nodes, spot_nodes = handle.details.get("nodes"), handle.details.get("spot_nodes")
    pricing = request.pricing(int(nodes or 1), None if spot_nodes is None else int(spot_nodes))
    return handle.evolve(pricing=pricing)
