"""airflow-runners: catalog checks, the evidence ledger, the reaper and the local demo.

    airflow-runners catalog validate [FILE]
    airflow-runners evidence show   [--dag-id D] [--run-id R] [--base URL] [--json]
    airflow-runners evidence verify [--dag-id D] [--run-id R] [--base URL] [--complete]
    airflow-runners reap [--dry-run] [--conn-id ID ...]   (default: every configured runner Connection)
    airflow-runners pool [--conn-id ID ...] [--maintain [--report-only]] [--catalog FILE] [--json]
    airflow-runners burst --config F --spec S --job-command C [--count N]   (job-array burst, docs/cost.md)
    airflow-runners demo [--rows N]

Exit codes: 0 ok, 1 a check failed (invalid catalog, broken chain, failed demo) or an error
(printed as one line: a bad URL, missing credentials, an unreachable bucket; set
RUNNERS_CLI_DEBUG=1 for the traceback), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any


def _print(text: str = "") -> None:
    sys.stdout.write(text + "\n")


class CliError(Exception):
    """An error the user can fix, printed as one line without a traceback."""


def explain(exc: BaseException, where: str = "") -> str:
    """One line for an exception from a storage URL, credentials or the network."""
    at = f"{where}: " if where else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    name = type(exc).__name__
    if name == "NoCredentialsError":
        return f"{at}no AWS credentials found; set [runners] evidence_conn_id, or AWS_PROFILE / AWS_ACCESS_KEY_ID"
    if name in ("DefaultCredentialsError", "RefreshError"):
        return f"{at}no Google credentials found; set [runners] evidence_conn_id or GOOGLE_APPLICATION_CREDENTIALS"
    if name == "ClientError" and hasattr(exc, "response"):
        error = exc.response.get("Error", {})
        return f"{at}{error.get('Code', 'error')}: {error.get('Message', text)}"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionError", "ClientConnectorError"):
        return f"{at}unreachable: {text}"
    if isinstance(exc, ImportError) and "Install" in text:
        return f"{at}{text} (pip install it next to the provider)"
    if "Unsupported filesystem" in text or "Invalid IPv6 URL" in text or "unknown protocol" in text.lower():
        return f"{at}not a usable URL ({text}); use file:///path, s3://bucket/prefix or gs://bucket/prefix"
    if isinstance(exc, PermissionError):
        return f"{at}permission denied: {text}"
    if isinstance(exc, FileNotFoundError):
        return f"{at}not found: {text}"
    return f"{at}{name}: {text}"


# -- catalog ---------------------------------------------------------------------------------
def cmd_catalog_validate(args: argparse.Namespace) -> int:
    from airflow_provider_runners.core.catalog import configured_catalog_path, load_catalog
    from airflow_provider_runners.exceptions import CatalogError

    args.file = args.file or str(configured_catalog_path())
    try:
        catalog = load_catalog(args.file)
    except CatalogError as exc:
        _print(f"INVALID: {exc}")
        return 1
    profiles = sum(len(p) for env in catalog.environments.values() for p in env.profiles.values())
    images = sum(len(v) for v in catalog.images.values())
    _print(
        f"OK: {args.file}: {len(catalog.environments)} environments ({', '.join(sorted(catalog.environments))}), "
        f"{profiles} profiles, {images} image versions, {len(catalog.prices)} prices; "
        f"default environment {catalog.default_environment!r}"
    )
    return 0


# -- evidence --------------------------------------------------------------------------------
def _chains(args: argparse.Namespace) -> list[Any]:
    from airflow_provider_runners.evidence.ledger import iter_chains, ledger_root

    try:
        return list(iter_chains(args.dag_id, args.run_id, args.base))
    except Exception as exc:
        try:
            where = str(ledger_root(args.base))
        except Exception:  # noqa: BLE001 - the URL itself is what is wrong
            where = str(args.base)
        raise CliError(f"evidence ledger {where}: {explain(exc)}") from exc


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    from airflow_provider_runners.evidence.ledger import verify_chain

    chains = _chains(args)
    if not chains:
        _print("no evidence chains found")
        return 1
    failed = 0
    for chain in chains:
        report = verify_chain(chain, complete=bool(getattr(args, "complete", False)))
        if report.ok:
            _print(f"OK    {chain}  ({len(report.entries)} entries)")
        else:
            failed += 1
            _print(f"FAIL  {chain}")
            for problem in report.problems:
                _print(f"        - {problem}")
    _print(f"{len(chains) - failed} of {len(chains)} chains intact")
    return 1 if failed else 0


def cmd_evidence_show(args: argparse.Namespace) -> int:
    from airflow_provider_runners.evidence.ledger import verify_chain
    from airflow_provider_runners.evidence.summary import summarize

    summaries = []
    for chain in _chains(args):
        report = verify_chain(chain)
        if report.entries:
            summary = summarize(report.entries)
            summary["verified"] = report.ok
            summary["path"] = str(chain)
            summaries.append(summary)
    if args.json:
        _print(json.dumps(summaries, indent=1))
        return 0
    if not summaries:
        _print("no evidence found")
        return 0
    totals: dict[str, dict[str, float]] = {"dag run": {}, "tenant": {}, "pipeline": {}}
    for s in summaries:
        _print(
            f"{s['dag_id']} / {s['run_id']}  runner {s['resource_id']} ({s['backend']})  "
            f"${s['usd']:.4f}  {'verified' if s['verified'] else 'CHAIN BROKEN'}"
        )
        for step in s["steps"]:
            dur = f"{step['duration_s']:.1f}s" if step["duration_s"] is not None else "-"
            _print(
                f"   {step['seq']:>3}  {step['event']:<10} {step['outcome']:<13} {dur:>8}  {step['task_id']}"
            )
        for key, value in (
            ("dag run", f"{s['dag_id']}/{s['run_id']}"),
            ("tenant", s["tenant"] or "-"),
            ("pipeline", s["pipeline"] or "-"),
        ):
            totals[key][value] = totals[key].get(value, 0.0) + s["usd"]
    for key, sums in totals.items():
        _print(f"cost by {key}: " + ", ".join(f"{k} ${v:.4f}" for k, v in sorted(sums.items())))
    return 0


# -- reap ------------------------------------------------------------------------------------
def cmd_reap(args: argparse.Namespace) -> int:
    from airflow_provider_runners.governance.reaper import sweep

    report = sweep(args.conn_id, dry_run=args.dry_run)
    _print(f"sweeping {', '.join(report.conn_ids)}")
    for a in report.actions:
        where = f"{a.resource_id} ({a.backend}, {a.conn_id})"
        if a.decision == "foreign":
            _print(f"skip   {where}: {a.reason}")
        elif a.decision == "keep":
            _print(f"keep   {where}: {a.reason}")
        elif args.dry_run:
            _print(f"would reap {where}: {a.reason}")
        else:
            _print(f"reaped {where}: {a.reason}; {a.result}; evidence {a.evidence}")
    for conn_id, error in report.errors.items():
        _print(f"ERROR  {conn_id}: {error}")
    reaped = len(report.by("reap"))
    if args.dry_run:
        _print(f"0 runner(s) reaped, {reaped} would be (dry run: nothing changed)")
    else:
        _print(f"{reaped} runner(s) reaped")
    return 0 if report.ok else 1


# -- pool ------------------------------------------------------------------------------------
def cmd_pool(args: argparse.Namespace) -> int:
    """EC2 warm pools of every (or the named) ``runners_ec2`` Connection; ``--maintain`` runs a pass."""
    from airflow_provider_runners.backends.ec2 import warm_pool
    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.governance.reaper import configured_conn_ids

    rows, actions, ok = [], [], True
    for conn_id in args.conn_id or configured_conn_ids():
        backend = get_backend(conn_id)
        if backend.name != "ec2":
            if args.conn_id:
                raise CliError(
                    f"Connection {conn_id!r} is for backend {backend.name!r}; warm pools are ec2 only"
                )
            continue
        if args.maintain:
            report = warm_pool.maintain(backend, report_only=args.report_only, catalog_path=args.catalog)  # type: ignore[arg-type]
            rows += report.pools
            actions += [{"conn_id": conn_id, **a} for a in report.summary()["actions"]]
            for error in report.errors:
                ok = False
                _print(f"ERROR  {conn_id}: {error}")
        else:
            rows += warm_pool.pools(backend, catalog_path=args.catalog)  # type: ignore[arg-type]
    if args.json:
        _print(json.dumps({"pools": rows, "actions": actions}, indent=2, default=str))
        return 0 if ok else 1
    for a in actions:
        done = "would " + a["action"] if args.report_only else a["action"]
        _print(f"{done:<16} {a['pool']} {a['instance_id']}: {a['reason']}")
    _print(f"{'CONNECTION':<22} {'POOL':<24} {'PROFILE':<10} {'IMAGE':<26} IDLE IN-USE MIN  MAX  IDLE-TTL")
    for r in rows:
        _print(
            f"{r['conn_id']:<22} {r['pool']:<24} {r['profile']:<10} {r['image']:<26} {r['idle']:<4} "
            f"{r['in_use']:<6} {r['min_size']:<4} {r['max_size'] if r['max_size'] is not None else '-':<4} {r['idle_ttl']}"
        )
    if not rows:
        _print("no warm pools (no runners_ec2 Connection with warm_pools or pooled hosts)")
    return 0 if ok else 1


# -- demo ------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from airflow_provider_runners.demo import run_demo

    return run_demo(rows=args.rows, dag_id=args.dag_id)


def build_parser() -> argparse.ArgumentParser:
    from airflow_provider_runners import __version__

    parser = argparse.ArgumentParser(
        prog="airflow-runners",
        description="Catalog checks, the evidence ledger, the reaper and the local demo of "
        "airflow-provider-runners.",
        epilog="Exit codes: 0 ok, 1 a check failed or an error (one line; RUNNERS_CLI_DEBUG=1 shows the "
        "traceback), 2 usage.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    catalog = sub.add_parser("catalog", help="check a runner catalog").add_subparsers(
        dest="action", required=True
    )
    validate = catalog.add_parser(
        "validate", help="validate a catalog YAML file (default: the configured one)"
    )
    validate.add_argument(
        "file", nargs="?", help="catalog YAML (default: [runners] catalog_path, else the shipped catalog)"
    )
    validate.set_defaults(func=cmd_catalog_validate)

    evidence = sub.add_parser("evidence", help="read the evidence ledger").add_subparsers(
        dest="action", required=True
    )
    for name, func, text in (
        ("show", cmd_evidence_show, "entries, durations and cost per runner"),
        ("verify", cmd_evidence_verify, "check every hash chain; exit 1 if any is broken"),
    ):
        cmd = evidence.add_parser(name, help=text)
        cmd.add_argument("--dag-id", help="only this DAG's chains")
        cmd.add_argument("--run-id", help="only this DAG run's chains (with --dag-id)")
        cmd.add_argument(
            "--base",
            help="ledger base URL: file:///path, s3://bucket/prefix, gs://bucket/prefix "
            "(default: [runners] evidence_path)",
        )
        if name == "show":
            cmd.add_argument("--json", action="store_true", help="print the summaries as JSON")
        else:
            cmd.add_argument(
                "--complete",
                action="store_true",
                help="also require every round of a chain to end with exactly one terminal entry "
                "(for DAG runs that have ended; docs/evidence.md)",
            )
        cmd.set_defaults(func=func)

    reap = sub.add_parser(
        "reap", help="tear down managed runners past their expiry or whose DAG run ended (every backend)"
    )
    reap.add_argument("--dry-run", action="store_true", help="print what would be reaped, change nothing")
    reap.add_argument(
        "--conn-id",
        action="append",
        default=None,
        help="runner Connection(s) to sweep (default: all configured)",
    )
    reap.set_defaults(func=cmd_reap)

    pool = sub.add_parser(
        "pool", help="list EC2 warm pools (idle / in-use hosts, sizes); --maintain runs a pass"
    )
    pool.add_argument(
        "--conn-id", action="append", default=None, help="runners_ec2 Connection(s) (default: all)"
    )
    pool.add_argument(
        "--maintain", action="store_true", help="terminate idle-too-long hosts, pre-warm to min_size"
    )
    pool.add_argument("--report-only", action="store_true", help="with --maintain: print what would be done")
    pool.add_argument("--catalog", default=None, help="catalog YAML (default: [runners] catalog_path)")
    pool.add_argument("--json", action="store_true", help="print pools and actions as JSON")
    pool.set_defaults(func=cmd_pool)
    from airflow_provider_runners.operators import job_array

    burst = sub.add_parser("burst", help="job-array burst on runners_ec2: --count N hosts now (docs/cost.md)")
    job_array.build_parser(burst).set_defaults(func=job_array.cli)

    demo = sub.add_parser("demo", help="run the local Dask ETL DAG end to end and print a summary")
    demo.add_argument(
        "--rows",
        type=int,
        default=int(os.environ.get("RUNNERS_DEMO_ROWS", "4000000")),
        help="sales rows to generate (default: $RUNNERS_DEMO_ROWS or 4000000)",
    )
    demo.add_argument(
        "--dag-id", default="local_dask_etl", help="example DAG to run (default: local_dask_etl)"
    )
    demo.set_defaults(func=cmd_demo)

    from airflow_provider_runners.backends.labgrid import coordinator as bench_coordinator

    coordinator = sub.add_parser(
        "bench-coordinator",
        help="run a local labgrid coordinator with example benches",
        description=(bench_coordinator.__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench_coordinator.build_parser(coordinator).set_defaults(func=bench_coordinator.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as exc:
        if os.environ.get("RUNNERS_CLI_DEBUG"):
            raise
        message = str(exc) if isinstance(exc, CliError) else explain(exc)
        sys.stderr.write(f"airflow-runners {args.command}: error: {message}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
