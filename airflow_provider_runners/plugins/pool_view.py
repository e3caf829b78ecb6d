"""The "Warm pools" section of the Runners page (:mod:`~airflow_provider_runners.plugins.runners_ui`):
one row per EC2 warm pool of every ``runners_ec2`` Connection — idle and in-use hosts, sizes,
idle ttl, the longest-idle host (docs/ec2.md, "Warm pool lifecycle"). Reads only; creates nothing.
"""

from __future__ import annotations

import html
from typing import Any


def warm_pools() -> list[dict[str, Any]]:
    """Rows of :func:`~airflow_provider_runners.backends.ec2.warm_pool.pools` for every ec2
    Connection; a Connection that cannot be read gives an error row."""
    from airflow_provider_runners.backends.ec2 import warm_pool
    from airflow_provider_runners.backends.registry import configured_conn_ids, get_backend
    from airflow_provider_runners.core.redact import redact_text

    conn_ids, _errors = configured_conn_ids()
    rows: list[dict[str, Any]] = []
    for conn_id in conn_ids:
        try:
            backend = get_backend(conn_id)
            if backend.name == "ec2":
                rows += warm_pool.pools(backend)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - one broken Connection must not break the page
            rows.append({"conn_id": conn_id, "error": redact_text(f"{type(exc).__name__}: {exc}")})
    return rows


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def render_warm_pools(rows: list[dict[str, Any]]) -> str:
    """The section's HTML (every value escaped)."""
    headers = [
        "Connection",
        "Pool",
        "Profile",
        "Image",
        "Idle",
        "In use",
        "Min",
        "Max",
        "Idle TTL",
        "Longest idle",
    ]
    body = []
    for r in rows:
        if r.get("error"):
            body.append(
                f'<tr><td>{_e(r["conn_id"])}</td><td colspan="9" class="bad">{_e(r["error"])}</td></tr>'
            )
            continue
        idle_s = r.get("oldest_idle_s")
        longest = f"{idle_s // 60}m" if isinstance(idle_s, int) else "-"
        cells = [
            r["conn_id"],
            r["pool"],
            r["profile"],
            r["image"],
            r["idle"],
            r["in_use"],
            r["min_size"],
            "-" if r["max_size"] is None else r["max_size"],
            r["idle_ttl"],
            longest,
        ]
        cls = ' class="bad"' if r["idle"] < r["min_size"] else ""
        tds = "".join(f"<td>{_e(c)}</td>" for c in cells)
        body.append(f'<tr{cls} title="{_e(r.get("pool_key"))}">{tds}</tr>')
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    empty = f'<tr><td colspan="{len(headers)}" class="empty">no warm pools</td></tr>'
    return (
        f"<h2>Warm pools</h2><table><thead><tr>{head}</tr></thead><tbody>{''.join(body) or empty}</tbody></table>"
        '<p class="note">Idle pooled hosts are stopped; the reaper and the <code>ec2_warm_pool</code> DAG end '
        "those idle longer than the idle TTL and pre-warm pools below their minimum "
        "(<code>airflow-runners pool</code>).</p>"
    )
