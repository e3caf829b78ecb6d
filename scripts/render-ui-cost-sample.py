"""Screenshot of the Runners page's "Cost and budgets" section with SAMPLE rows (docs/ui.md).

``python scripts/render-ui-cost-sample.py docs/img/runners-cost-sample.png`` renders
``render_page()`` with made-up evidence (four pipelines of three tenants over seven days), two
live runners and a catalog with budgets, and screenshots it in headless Chromium (Debian's
``chromium``, Playwright). It reads no deployment and creates nothing else; the real page on a
real deployment is screenshotted by tests/e2e/test_ui.py (``RUNNERS_DOCS_SCREENSHOTS=1``).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from playwright.sync_api import sync_playwright

from airflow_provider_runners.core.catalog import Catalog
from airflow_provider_runners.plugins.runners_ui import render_page

t0 = datetime(2026, 11, 30, tzinfo=UTC)
evidence = []
plan = [
    ("analytics", "sales-etl", 0.42),
    ("analytics", "churn-model", 0.9),
    ("qa", "hil-nightly", 0.25),
    ("finance", "erp-extract", 0.6),
]
for day in range(7):
    for i, (tenant, pipeline, usd) in enumerate(plan):
        if (day + i) % 3 == 2:
            continue
        evidence.append(
            {
                "dag_id": pipeline.replace("-", "_"),
                "run_id": f"scheduled__2026-11-{30 - 6 + day:02d}" if day < 6 else "scheduled__2026-12-01",
                "lineage_key": f"{pipeline}.{day}",
                "backend": "dataproc_dask"
                if "etl" in pipeline or "churn" in pipeline
                else ("labgrid" if tenant == "qa" else "ec2"),
                "resource_id": f"r-{pipeline[:5]}-{day}",
                "tenant": tenant,
                "pipeline": pipeline,
                "started_at": (t0 - timedelta(days=6 - day, hours=-2 * i)).isoformat(),
                "entries": 5,
                "failures": 0,
                "torn_down": True,
                "usd": round(usd * (1 + 0.3 * ((day * 7 + i) % 4)), 4),
                "verified": True,
                "problems": [],
                "run_state": "success",
                "steps": [],
            }
        )
now = t0 + timedelta(hours=10)
live = [
    {
        "conn_id": "runners_dataproc",
        "backend": "dataproc_dask",
        "resource_id": "runners-sales-7f3a",
        "state": "ready",
        "message": "",
        "dag_id": "sales_etl",
        "task_id": "cluster-provision",
        "environment": "prod",
        "profile": "standard",
        "created_at": now.isoformat(),
        "expires_at": (now + timedelta(minutes=40)).isoformat(),
        "lineage_key": "x",
        "dashboard": "https://example.invalid/dask",
        "tenant": "analytics",
        "pipeline": "sales-etl",
        "usd_per_hour": 2.4,
        "error": None,
    },
    {
        "conn_id": "runners_ec2",
        "backend": "ec2",
        "resource_id": "i-0a1b2c3d4e",
        "state": "ready",
        "message": "",
        "dag_id": "erp_extract",
        "task_id": "host-provision",
        "environment": "prod",
        "profile": "Large",
        "created_at": now.isoformat(),
        "expires_at": (now + timedelta(hours=2)).isoformat(),
        "lineage_key": "y",
        "dashboard": None,
        "tenant": "finance",
        "pipeline": "erp-extract",
        "usd_per_hour": 0.83,
        "error": None,
    },
]
catalog = Catalog.model_validate(
    {
        "default_environment": "prod",
        "environments": {
            "prod": {
                "budgets": {
                    "tenant": {"analytics": 3.0, "finance": 2.0, "qa": 1.0},
                    "pipeline": {"sales-etl": 2.5},
                }
            }
        },
    }
)
html = render_page(live, evidence, now=now, catalog=catalog)
with sync_playwright() as pw:
    b = pw.chromium.launch(
        executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"]
    )
    p = b.new_page(viewport={"width": 1400, "height": 900})
    p.set_content(html)
    p.locator("h2", has_text="Cost and budgets").scroll_into_view_if_needed()
    top = p.locator("h2", has_text="Cost and budgets").bounding_box()["y"]
    height = p.evaluate("document.body.scrollHeight")
    p.screenshot(
        path=sys.argv[1],
        full_page=True,
        clip={"x": 0, "y": top - 10, "width": 1400, "height": height - top + 20},
    )
    b.close()
