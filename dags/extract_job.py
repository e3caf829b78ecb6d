"""Monthly partitioned bulk extract, the program a dedicated host runs (docs/ec2.md).

Run as ``python3 extract_job.py --partition 2026-01 --output URL --checkpoints URL --dlq URL``
on the host (``RunnerCommandOperator`` in dags/dedicated_host_extract.py). Everything durable
goes to object storage through fsspec (``s3://``, ``gs://``; ``file://`` locally) — never the
host's disk, which ends with the host:

* output ``<output>/month=<YYYY-MM>/part-<NNN>.jsonl``: one file per chunk of days, a fixed
  name per chunk, so a re-run overwrites instead of duplicating;
* checkpoints ``<checkpoints>/<partition>/chunk-<NNN>.done``: a restart (task retry) skips the
  chunks already written; ``_SUCCESS`` under the month marks the partition complete;
* DLQ ``<dlq>/month=<YYYY-MM>/part-<NNN>.jsonl``: records that fail validation, with the reason.

The source here is a deterministic synthetic ERP table, a stand-in for the vendor JDBC driver
(``ERP_JDBC_URL`` unset). The password arrives in ``ERP_PASSWORD`` at run time (a
``secret_env`` reference); this program checks it is there and never prints it.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import random
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

CURRENCIES = ("EUR", "USD", "GBP", "JPY")
CHUNK_DAYS = 7
CRASH_EXIT = 75  # EX_TEMPFAIL: the injected crash of the restart drill


def chunk_days(partition: str) -> list[list[date]]:
    """The month's days in chunks of CHUNK_DAYS."""
    year, month = (int(part) for part in partition.split("-"))
    days = [date(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)]
    return [days[i : i + CHUNK_DAYS] for i in range(0, len(days), CHUNK_DAYS)]


def source_rows(day: date, rows_per_day: int) -> Iterator[dict[str, Any]]:
    """Synthetic ERP ledger lines for one day: deterministic, about 0.5 % invalid."""
    rng = random.Random(day.toordinal())
    for n in range(rows_per_day):
        row: dict[str, Any] = {
            "doc_id": f"{day:%Y%m%d}-{n:06d}",
            "posting_date": day.isoformat(),
            "customer_id": f"C{rng.randrange(1, 5000):05d}",
            "amount": round(rng.uniform(1, 5000), 2),
            "currency": rng.choice(CURRENCIES),
        }
        fault = rng.random()
        if fault < 0.002:
            row["amount"] = -row["amount"]
        elif fault < 0.004:
            row["currency"] = "XXX"
        elif fault < 0.005:
            row["customer_id"] = ""
        yield row


def validation_error(row: dict[str, Any]) -> str | None:
    if row["amount"] < 0:
        return "negative amount"
    if row["currency"] not in CURRENCIES:
        return f"unknown currency {row['currency']!r}"
    if not row["customer_id"]:
        return "missing customer_id"
    return None


def _write_lines(fs: Any, path: str, rows: list[dict[str, Any]]) -> None:
    """Write to a temporary name, then move into place: a crash never leaves half a file."""
    tmp = f"{path}.tmp"
    with fs.open(tmp, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
    fs.mv(tmp, path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import fsspec

    if not os.environ.get("ERP_PASSWORD"):
        raise SystemExit("ERP_PASSWORD is not set: pass it as a secret_env reference")
    driver = os.environ.get("ERP_DRIVER", "synthetic")
    print(f"connecting to ERP as {os.environ.get('ERP_USER', 'extract')} with driver {driver}", flush=True)
    fs, _ = fsspec.core.url_to_fs(args.output)
    month_dir = f"{args.output.rstrip('/')}/month={args.partition}"
    checkpoint_dir = f"{args.checkpoints.rstrip('/')}/{args.partition}"
    dlq_dir = f"{args.dlq.rstrip('/')}/month={args.partition}"
    for path in (month_dir, checkpoint_dir, dlq_dir):
        fs.makedirs(path, exist_ok=True)
    totals = {"partition": args.partition, "rows": 0, "dlq": 0, "chunks": 0, "skipped_chunks": 0}
    for index, days in enumerate(chunk_days(args.partition)):
        marker = f"{checkpoint_dir}/chunk-{index:03d}.done"
        if fs.exists(marker):
            done = json.loads(fs.cat_file(marker))
            totals["rows"] += done["rows"]
            totals["dlq"] += done["dlq"]
            totals["skipped_chunks"] += 1
            print(f"chunk {index}: already done ({done['rows']} rows), skipped", flush=True)
            continue
        good: list[dict[str, Any]] = []
        bad: list[dict[str, Any]] = []
        for day in days:
            for row in source_rows(day, args.rows_per_day):
                reason = validation_error(row)
                (bad if reason else good).append({**row, "dlq_reason": reason} if reason else row)
        _write_lines(fs, f"{month_dir}/part-{index:03d}.jsonl", good)
        if bad:
            _write_lines(fs, f"{dlq_dir}/part-{index:03d}.jsonl", bad)
        with fs.open(marker, "w") as fh:
            fh.write(json.dumps({"rows": len(good), "dlq": len(bad)}))
        totals["rows"] += len(good)
        totals["dlq"] += len(bad)
        totals["chunks"] += 1
        print(f"chunk {index}: {days[0]}..{days[-1]} {len(good)} rows, {len(bad)} to DLQ", flush=True)
        crash_marker = f"{checkpoint_dir}/crash-injected"
        if args.crash_once_after_chunk == index and not fs.exists(crash_marker):
            fs.touch(crash_marker)
            print(f"injected crash after chunk {index} (restart drill)", flush=True)
            sys.exit(CRASH_EXIT)
    with fs.open(f"{month_dir}/_SUCCESS", "w") as fh:
        fh.write(json.dumps(totals, sort_keys=True))
    print("RESULT " + json.dumps(totals, sort_keys=True), flush=True)
    return totals


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition", required=True, help="YYYY-MM")
    parser.add_argument("--output", required=True)
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--dlq", required=True)
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--crash-once-after-chunk", type=int, default=None)
    args = parser.parse_args(argv)
    year, _, month = args.partition.partition("-")
    if not (year.isdigit() and month.isdigit() and 1 <= int(month) <= 12):
        parser.error(f"--partition: {args.partition!r} is not YYYY-MM")
    return args


def previous_months(end: date, count: int) -> list[str]:
    """``count`` month partitions ending with the month before ``end`` (oldest first)."""
    months = []
    cursor = end.replace(day=1)
    for _ in range(count):
        cursor = (cursor - timedelta(days=1)).replace(day=1)
        months.append(f"{cursor:%Y-%m}")
    return sorted(months)


if __name__ == "__main__":
    run(parse_args())
