"""Parse time per ``dags/`` file, dag-processor style: CPU time in a fork, minus an empty DAG file.

Airflow 3's dag-processor imports Airflow once, then forks a child for every parse of a file;
the child imports what the file imports (the provider, afresh each time) and runs it. This
benchmark does the same in one run, so both sides share one process image:

1. the parent imports ``airflow``, ``airflow.sdk`` and ``DagBag``, then ``gc.freeze()``;
2. per round, for the empty DAG file (``from airflow.sdk import DAG`` and one empty DAG) and
   for every file in ``dags/`` (order shuffled per round), it forks; the child measures its own
   CPU time (``time.process_time()``: user + system, not wall time, so other processes on the
   machine barely move it) around ``DagBag(dag_folder=<file>)`` and reports it over a pipe;
3. per file: the median over rounds of (its CPU time − the empty file's CPU time in the same
   round) — the cost of the file and the provider beyond what any DAG file costs;
4. per file, also its *Airflow twin*: the empty DAG file plus the file's own top-level
   ``airflow.*`` imports (``from airflow.sdk import task`` imports Airflow's decorators and
   ``PythonOperator``, about 0.04 s, whether or not the provider is used). CPU time beyond the
   twin is what the provider and the file's own code add.

The target (issue 18): ≤ 0.05 s beyond the empty DAG file, for every file. Earlier numbers
subtracted two imports made in different fresh interpreters, which went negative under load
(docs/benchmarks.md).

Bytecode: a deployment's dag-processor imports modules from ``.pyc`` files (written on the first
import, or at install time). With ``PYTHONDONTWRITEBYTECODE`` set — as in this project's
sandbox — every fork would compile every module from source again, and compiling would be
half of the figure. So by default the benchmark writes bytecode under its temporary directory
(``sys.pycache_prefix``; the warm-up parse writes it, the measured rounds read it);
``--bytecode off`` measures compiling from source every time.

    .venv/bin/python benchmarks/parse_fork.py [--rounds 15] [--bytecode cached|off]

Prints Markdown and writes ``benchmarks/results/parse_fork.json``. Reads only; writes its
temporary AIRFLOW_HOME and DAGS_FOLDER under the system temp directory and removes them.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import PYTHON, REPO, fmt, machine, machine_line, md_table, summarize, write_json

TARGET_S = 0.05
EMPTY = "_empty_dag.py"
EMPTY_SOURCE = '''"""An empty DAG file: what any DAG file costs to parse."""
from datetime import datetime

from airflow.sdk import DAG

with DAG("empty", schedule=None, start_date=datetime(2026, 1, 1)):
    pass
'''


TWIN = "twin:"


def _key(path: Path) -> str:
    return TWIN + path.name if path.parent.name == "airflow_twins" else path.name


def _airflow_twin(source: str) -> str:
    """The empty DAG file plus ``source``'s top-level ``import airflow...`` / ``from airflow... import``."""
    lines = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        if any(m.split(".")[0] == "airflow" for m in modules):
            lines.append(ast.unparse(node))
    return EMPTY_SOURCE + "\n".join(lines) + "\n"


def _home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="runners-bench-parse-fork-"))
    folder = home / "dags"
    folder.mkdir()
    for path in sorted((REPO / "dags").glob("*.py")):
        shutil.copy(path, folder / path.name)
    (folder / EMPTY).write_text(EMPTY_SOURCE)
    twins = home / "airflow_twins"  # outside the DAGs folder
    twins.mkdir()
    for path in sorted((REPO / "dags").glob("*.py")):
        (twins / path.name).write_text(_airflow_twin(path.read_text()))
    # The dag-processor puts the bundle's folder on sys.path: DAG files import their job modules.
    sys.path.append(str(folder))
    os.environ.update(
        AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(folder), AIRFLOW__CORE__LOAD_EXAMPLES="False"
    )
    subprocess.run(
        [str(PYTHON.with_name("airflow")), "db", "migrate"],
        capture_output=True,
        check=True,
        env=os.environ.copy(),
    )
    return home


def _parse_in_fork(path: Path) -> dict[str, Any]:
    """Fork, parse ``path`` with a DagBag in the child, return the child's CPU time and result."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: as the dag-processor's per-file parse process
        os.close(read_fd)
        code = 0
        try:
            from airflow.dag_processing.dagbag import DagBag

            c0, w0 = time.process_time(), time.perf_counter()
            bag = DagBag(dag_folder=str(path))  # examples are off: AIRFLOW__CORE__LOAD_EXAMPLES
            out = {
                "cpu_s": time.process_time() - c0,
                "wall_s": time.perf_counter() - w0,
                "dags": len(bag.dags),
                "errors": {str(k): str(v)[:300] for k, v in bag.import_errors.items()},
            }
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            out, code = {"error": repr(exc)}, 1
        os.write(write_fd, json.dumps(out).encode())
        os.close(write_fd)
        os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--bytecode", choices=["cached", "off"], default="cached")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    home = _home()
    if args.bytecode == "cached":  # before Airflow is imported: the parent's imports are cached too
        sys.dont_write_bytecode = False
        sys.pycache_prefix = str(home / "pycache")
    else:
        sys.dont_write_bytecode = True
    try:
        import gc

        import airflow
        import airflow.sdk  # noqa: F401
        from airflow.dag_processing.dagbag import DagBag  # noqa: F401

        gc.freeze()  # as the dag-processor does before it forks
        folder = home / "dags"
        files = sorted(p for p in folder.glob("*.py") if p.name != EMPTY)
        twins = [home / "airflow_twins" / p.name for p in files]
        raw: dict[str, list[dict[str, Any]]] = {_key(p): [] for p in [folder / EMPTY, *files, *twins]}
        for path in [folder / EMPTY, *files, *twins]:  # warm the page cache and bytecode, discarded
            _parse_in_fork(path)
        for _ in range(args.rounds):
            order = [folder / EMPTY, *files, *twins]
            random.shuffle(order)
            for path in order:
                raw[_key(path)].append(_parse_in_fork(path))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    load_after = os.getloadavg()
    failed = [r for runs in raw.values() for r in runs if "cpu_s" not in r]
    if failed:
        raise SystemExit(f"a parse failed in its fork: {failed[0]}")
    empty = [r["cpu_s"] for r in raw[EMPTY]]
    rows, results = [], {}
    for name, runs in raw.items():
        if name == EMPTY or name.startswith(TWIN):
            continue
        errors = [r for r in runs if "error" in r or r.get("errors")]
        beyond = [r["cpu_s"] - e for r, e in zip(runs, empty, strict=True)]
        twin = [r["cpu_s"] - t["cpu_s"] for r, t in zip(runs, raw[TWIN + name], strict=True)]
        s, t = summarize(beyond), summarize(twin)
        cpu = summarize(r["cpu_s"] for r in runs)
        verdict = "meets" if s["median"] <= TARGET_S else "misses"
        results[name] = {
            "beyond_empty": s,
            "beyond_airflow_twin": t,
            "cpu": cpu,
            "dags": runs[0].get("dags"),
            "errors": errors[:1],
        }
        rows.append(
            [
                f"`dags/{name}`",
                runs[0].get("dags"),
                fmt(cpu["median"], 3),
                f"**{fmt(s['median'], 3)}**",
                fmt(s["p90"], 3),
                fmt(t["median"], 3),
                f"≤ {TARGET_S} s: **{verdict}**" + (" (import errors!)" if errors else ""),
            ]
        )
    e = summarize(empty)
    print(
        f"## Parse time per dags/ file, dag-processor style — {args.rounds} rounds, bytecode {args.bytecode}\n"
    )
    print(f"Machine: {machine_line(machine())}; load average before {load_before}, after {load_after}\n")
    print(f"Empty DAG file in a fork: CPU median {fmt(e['median'], 3)} s (p90 {fmt(e['p90'], 3)} s).\n")
    print(
        md_table(
            [
                "file",
                "DAGs",
                "CPU in fork (s)",
                "beyond empty, median (s)",
                "p90 (s)",
                "beyond its Airflow twin, median (s)",
                "target (beyond empty)",
            ],
            rows,
        )
    )
    worst = max(results.items(), key=lambda kv: kv[1]["beyond_empty"]["median"])
    print(f"\nWorst file: `{worst[0]}` {worst[1]['beyond_empty']['median']:.3f} s beyond the empty DAG file.")
    write_json(
        "parse_fork",
        {
            "args": vars(args),
            "load_before": load_before,
            "load_after": load_after,
            "empty": e,
            "files": results,
            "spread_empty_stdev": statistics.pstdev(empty) if empty else None,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
