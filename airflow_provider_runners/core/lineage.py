"""Idempotency keys: the lineage key (per task instance) and the attempt token (per try).

*Lineage key* — derived from (dag_id, run_id, task_id, map_index). It is written on every
resource as a tag/label, so a retry of the same task instance finds what an earlier try
created and adopts it (healthy) or replaces it (broken).

*Attempt token* — the lineage key plus the try number. It goes into the cloud's own
idempotency field (EC2 ClientToken <= 64 chars, Dataproc request_id <= 40 chars of
[A-Za-z0-9_-]). It changes on every try on purpose: a token reused across tries would
replay the failed request instead of making a new one (apache/airflow PR #69625).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

MANAGED_BY = "airflow-provider-runners"
_UNSAFE = re.compile(r"[^a-z0-9_-]+")


@dataclass(frozen=True)
class Lineage:
    """Identity of one task instance that provisions a runner."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    @classmethod
    def from_context(cls, context: Any, task_id: str | None = None) -> Lineage:
        """The lineage of the running task instance, or of ``task_id`` in the same DAG run."""
        ti = context["ti"]
        return cls(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=task_id or ti.task_id,
            map_index=getattr(ti, "map_index", -1)
            if task_id is None
            else sibling_map_index(context, task_id),
        )

    @property
    def key(self) -> str:
        """28 chars, ``rl`` + 26 hex digits: safe as a tag, a label value and a name part."""
        raw = "\x1f".join((self.dag_id, self.run_id, self.task_id, str(self.map_index)))
        return "rl" + hashlib.sha256(raw.encode()).hexdigest()[:26]

    def attempt_token(self, try_number: int) -> str:
        """At most 40 chars of [a-z0-9-]: valid as Dataproc request_id and EC2 ClientToken."""
        return f"{self.key}-t{int(try_number)}"

    def labels(self) -> dict[str, str]:
        """Identity labels for a resource (label-safe; the lineage key is the one to search by)."""
        return {
            "managed-by": MANAGED_BY,
            "runner-lineage": self.key,
            "dag-id": label_value(self.dag_id),
            "task-id": label_value(self.task_id),
        }


def sibling_map_index(context: Any, task_id: str) -> int:
    """The map index of ``task_id``'s instance that pairs with the running one: the same index
    when ``task_id`` is mapped (itself or in a mapped task group: a teardown in a mapped group
    pairs with its own provision), else -1 (a mapped work task over an unmapped provision)."""
    index = getattr(context["ti"], "map_index", -1)
    if index is None or index < 0:
        return -1
    try:
        other = context["task"].dag.get_task(task_id)
        mapped = other.get_closest_mapped_task_group() is not None or bool(getattr(other, "is_mapped", False))
    except Exception:  # noqa: BLE001 - no DAG at hand (a bare context): the unmapped instance
        return -1
    return int(index) if mapped else -1


def label_value(text: str) -> str:
    """Squash arbitrary text into a 1-63 char label value (lossy; for display and filtering)."""
    squashed = _UNSAFE.sub("-", text.lower()).strip("-_") or "x"
    if len(squashed) > 63:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        squashed = squashed[:54].rstrip("-_") + "-" + digest
    return squashed
