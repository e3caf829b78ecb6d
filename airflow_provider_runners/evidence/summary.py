"""One evidence chain summarised per runner: for ``airflow-runners evidence show``, the demo and the
Runners page in the UI (docs/evidence.md, docs/ui.md)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def summarize(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-runner summary of one chain: what, where, how long, what it cost, how it ended."""
    runner = next((e["runner"] for e in entries if e.get("runner")), None) or {}
    by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        by_event[entry["event"]].append(entry)
    # the reaper's entry and an "end" entry end a runner too; the latest end has the whole lifetime
    teardown = sorted(
        [*by_event.get("teardown", []), *by_event.get("reap", []), *by_event.get("end", [])],
        key=lambda e: e["seq"],
    )
    cost = next((e["cost"]["usd"] for e in reversed(teardown) if e.get("cost")), None)
    if cost is None:
        cost = sum((e.get("cost") or {}).get("usd", 0.0) for e in by_event.get("work", []))
    return {
        "dag_id": entries[0]["dag_id"],
        "run_id": entries[0]["run_id"],
        "lineage_key": entries[0]["lineage_key"],
        "started_at": entries[0].get("recorded_at"),
        "backend": runner.get("backend"),
        "resource_id": runner.get("resource_id"),
        "tenant": (runner.get("tags") or {}).get("tenant"),
        "pipeline": (runner.get("tags") or {}).get("pipeline"),
        "entries": len(entries),
        "failures": sum(1 for e in entries if e.get("outcome") != "success"),
        "torn_down": any(e.get("outcome") == "success" for e in teardown)
        or any(e.get("terminal") for e in entries),
        "usd": round(cost or 0.0, 6),
        "steps": [
            {
                "seq": e["seq"],
                "event": e["event"],
                "task_id": e.get("task_id"),
                "outcome": e.get("outcome"),
                "duration_s": (e.get("timings") or {}).get("duration_s"),
            }
            for e in entries
        ],
    }
