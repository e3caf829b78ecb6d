"""Parse time per DAG file in ``dags/``, including the provider import.

Every measurement runs in a fresh interpreter (``subprocess``) against a throwaway
AIRFLOW_HOME; the DAG files are copied to a temporary DAGS_FOLDER (so ``__pycache__`` is
written there, not in the repository). Per round, for each file:

* ``sdk``    (a) baseline: ``import airflow.sdk`` only;
* ``exec``   (b) ``import airflow.sdk``, then the provider modules the file imports, then the
  file executed as a module (what ``DagBag`` does, without Airflow's bagging), then the
  file executed a second time under a new module name: the re-parse in a warm process;
* ``dagbag`` (c) what Airflow 3's dag-processor does per file: the parent has
  ``airflow.*`` modules pre-imported (``[dag_processor] parsing_pre_import_modules``) and
  forks a child per parse (after ``gc.freeze()``), which imports the provider afresh — so
  here: pre-import the ``airflow.*`` modules the file names plus ``DagBag``, ``gc.freeze()``,
  then time ``DagBag(dag_folder=file)``; then a second ``DagBag`` in the same process (warm).

Reported: per-file median and p90 of (b) − (a) over the rounds (the target, <= 0.3 s), the
split of (b), the warm re-parse, (c) cold and warm. And ``python -X importtime`` of
``import airflow_provider_runners.taskgroup`` after ``import airflow.sdk``: the provider's
top contributors outside Airflow, and whether a heavy module (dask, distributed, pandas,
pyarrow, numpy) is imported at parse time — it must not be.

    .venv/bin/python benchmarks/parse_time.py [--runs 5]

Prints Markdown and writes ``benchmarks/results/parse_time.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _common import PYTHON, REPO, fmt, machine, machine_line, md_table, summarize, write_json

TARGET_S = 0.3
HEAVY = ("dask", "distributed", "pandas", "pyarrow", "numpy")
PROVIDER = "airflow_provider_runners"

_SDK = """
import json, time
t0, c0 = time.perf_counter(), time.process_time()
import airflow.sdk
print(json.dumps({"sdk_s": time.perf_counter() - t0, "sdk_cpu_s": time.process_time() - c0}))
"""

_EXEC = """
import ast, importlib, importlib.util, json, sys, time
path = sys.argv[1]
sys.path.insert(0, __import__('os').path.dirname(path))  # Airflow puts the DAGs folder on sys.path
HEAVY = %(heavy)r

def provider_imports(path):
    # (module, names) for every import of the provider in the file (names may be lazy attributes)
    found = []
    for node in ast.walk(ast.parse(open(path, "rb").read())):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == %(provider)r]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module.split(".")[0] == %(provider)r:
                found.append((node.module, [a.name for a in node.names]))
    return found

def exec_file(name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

wanted = provider_imports(path)
t0, c0 = time.perf_counter(), time.process_time()
import airflow.sdk
t1, c1 = time.perf_counter(), time.process_time()
for name, attrs in wanted:
    module = importlib.import_module(name)
    for attr in attrs:
        getattr(module, attr)  # the provider's public names are imported lazily
t2 = time.perf_counter()
module = exec_file("unusual_prefix_bench_first")
t3, c3 = time.perf_counter(), time.process_time()
dags = sorted(v.dag_id for v in vars(module).values() if isinstance(v, airflow.sdk.DAG))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
t4 = time.perf_counter()
exec_file("unusual_prefix_bench_second")
t5 = time.perf_counter()
print(json.dumps({"sdk_s": t1 - t0, "provider_import_s": t2 - t1, "file_exec_s": t3 - t2,
                  "total_s": t3 - t0, "sdk_cpu_s": c1 - c0, "total_cpu_s": c3 - c0, "warm_reparse_s": t5 - t4, "dags": dags, "heavy_modules": heavy}))
"""

_DAGBAG = """
import json, sys, time, importlib
path = sys.argv[1]
sys.path.insert(0, __import__('os').path.dirname(path))  # Airflow puts the DAGs folder on sys.path
import airflow.sdk
from airflow.utils.file import iter_airflow_imports
for name in iter_airflow_imports(path):
    try:
        importlib.import_module(name)
    except Exception:
        pass
from airflow.dag_processing.dagbag import DagBag
import gc
gc.freeze()  # as the dag-processor manager does before it forks a parsing process
t0 = time.perf_counter()
bag = DagBag(dag_folder=path)
t1 = time.perf_counter()
again = DagBag(dag_folder=path)
t2 = time.perf_counter()
print(json.dumps({"dagbag_cold_s": t1 - t0, "dagbag_warm_s": t2 - t1, "dags": sorted(bag.dags),
                  "import_errors": {str(k): str(v)[-300:] for k, v in bag.import_errors.items()}}))
"""

_IMPORTTIME = "import airflow.sdk; import airflow_provider_runners.taskgroup"


def say(text: str = "") -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def child(code: str, *args: str, env: dict[str, str], cwd: Path) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [str(PYTHON), "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"parse benchmark child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


# -- importtime ----------------------------------------------------------------------------------
def _importtime_rows(stderr: str) -> list[tuple[str, int, int, int]]:
    """(module, self_us, cumulative_us, depth) in the order Python printed them."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        head, cum_us, name = line.split("|", 2)
        self_us = head.split(":", 1)[1]
        module = name.rstrip()[1:]  # one separator space, then two spaces per nesting level
        depth = (len(module) - len(module.lstrip(" "))) // 2
        rows.append((module.strip(), int(self_us), int(cum_us), depth))
    return rows


def importtime(env: dict[str, str], cwd: Path, runs: int) -> dict[str, Any]:
    """Modules ``import airflow_provider_runners.taskgroup`` adds after ``import airflow.sdk``."""
    per_module: dict[str, list[int]] = defaultdict(list)
    totals: list[float] = []
    airflow_new: list[float] = []
    heavy_seen: set[str] = set()
    for _ in range(runs):
        proc = subprocess.run(
            [str(PYTHON), "-X", "importtime", "-c", _IMPORTTIME],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"importtime child failed:\n{proc.stderr[-3000:]}")
        rows = _importtime_rows(proc.stderr)
        end_sdk = next(i for i, (m, _, _, d) in enumerate(rows) if m == "airflow.sdk" and d == 0)
        after = rows[end_sdk + 1 :]
        top = next(r for r in after if r[0] == f"{PROVIDER}.taskgroup" and r[3] == 0)
        totals.append(top[2] / 1e6)
        airflow_new.append(sum(s for m, s, _, _ in after if m.split(".")[0] == "airflow") / 1e6)
        for module, self_us, _, _ in after:
            per_module[module].append(self_us)
            if module.split(".")[0] in HEAVY:
                heavy_seen.add(module)
    medians = {m: statistics.median(v) / 1e6 for m, v in per_module.items()}
    outside = {m: s for m, s in medians.items() if m.split(".")[0] != "airflow"}
    by_package: dict[str, float] = defaultdict(float)
    for module, seconds in outside.items():
        by_package[module.split(".")[0]] += seconds
    return {
        "runs": runs,
        "total_s": statistics.median(totals),
        "airflow_modules_newly_imported_s": statistics.median(airflow_new),
        "new_modules": len(per_module),
        "top_modules_outside_airflow": sorted(outside.items(), key=lambda kv: -kv[1])[:12],
        "by_package_outside_airflow": sorted(by_package.items(), key=lambda kv: -kv[1]),
        "heavy_modules": sorted(heavy_seen),
    }


# -- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=7, help="fresh-process rounds per measurement (default 7)"
    )
    parser.add_argument("--importtime-runs", type=int, default=3)
    parser.add_argument(
        "--dags", type=Path, default=REPO / "dags", help="folder of DAG files (default dags/)"
    )
    args = parser.parse_args(argv)
    t_start = time.monotonic()

    home = Path(tempfile.mkdtemp(prefix="runners-bench-parse-"))
    dags = home / "dags"
    shutil.copytree(args.dags, dags, ignore=shutil.ignore_patterns("__pycache__"))
    files = sorted(p for p in dags.glob("*.py") if not p.name.startswith("_"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__RUNNERS__")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        PYTHONWARNINGS="ignore",
    )
    say(f"AIRFLOW_HOME={home}; files: {[f.name for f in files]}")
    # Prime: writes airflow.cfg and the DAG files' bytecode; not measured.
    child(_SDK, env=env, cwd=home)
    for f in files:
        child(_EXEC % {"heavy": HEAVY, "provider": PROVIDER}, str(f), env=env, cwd=home)
        child(_DAGBAG, str(f), env=env, cwd=home)

    base: list[dict[str, Any]] = []
    per_file: dict[str, dict[str, list[dict[str, Any]]]] = {f.name: {"exec": [], "dagbag": []} for f in files}
    exec_code = _EXEC % {"heavy": HEAVY, "provider": PROVIDER}
    for round_no in range(args.runs):
        # (a) and (b) alternate which goes first (ABBA) so that drift does not favour either.
        jobs: list[tuple[str, str | None]] = [("sdk", None)]
        jobs += [(kind, f.name) for f in files for kind in ("exec", "dagbag")]
        for kind, name in jobs if round_no % 2 == 0 else reversed(jobs):
            if kind == "sdk":
                res, wall = child(_SDK, env=env, cwd=home)
                base.append({**res, "process_wall_s": wall})
            else:
                res, wall = child(
                    exec_code if kind == "exec" else _DAGBAG, str(dags / str(name)), env=env, cwd=home
                )
                per_file[str(name)][kind].append({**res, "process_wall_s": wall})
        say(f"round {round_no + 1}/{args.runs}: import airflow.sdk {base[-1]['sdk_s']:.2f}s")
    say("python -X importtime ...")
    imports = importtime(env, home, args.importtime_runs)

    results: dict[str, Any] = {}
    for name, runs in per_file.items():
        deltas = [e["total_s"] - b["sdk_s"] for e, b in zip(runs["exec"], base, strict=True)]
        results[name] = {
            "b_minus_a": summarize(deltas),
            "b_minus_a_cpu": summarize(
                e["total_cpu_s"] - b["sdk_cpu_s"] for e, b in zip(runs["exec"], base, strict=True)
            ),
            "b_minus_own_sdk": summarize(e["total_s"] - e["sdk_s"] for e in runs["exec"]),
            "provider_import": summarize(e["provider_import_s"] for e in runs["exec"]),
            "file_exec": summarize(e["file_exec_s"] for e in runs["exec"]),
            "warm_reparse": summarize(e["warm_reparse_s"] for e in runs["exec"]),
            "dagbag_cold": summarize(d["dagbag_cold_s"] for d in runs["dagbag"]),
            "dagbag_warm": summarize(d["dagbag_warm_s"] for d in runs["dagbag"]),
            "dags": runs["exec"][0]["dags"],
            "heavy_modules_after_parse": sorted({m for e in runs["exec"] for m in e["heavy_modules"]}),
            "import_errors": runs["dagbag"][0]["import_errors"],
            "meets_target": summarize(deltas)["median"] <= TARGET_S,
        }
    sdk = summarize(b["sdk_s"] for b in base)

    print(f"## Parse time per DAG file — {args.runs} fresh-process rounds\n")
    print(f"Machine: {machine_line(machine())}\n")
    print(f"Baseline (a) `import airflow.sdk`: median {sdk['median']:.2f} s, p90 {sdk['p90']:.2f} s.\n")
    target_rows, split_rows = [], []
    for name, r in results.items():
        d, label = r["b_minus_a"], f"`dags/{name}` ({len(r['dags'])} DAGs)"
        target_rows.append(
            [
                label,
                f"**{fmt(d['median'], 3)}**",
                fmt(d["p90"], 3),
                fmt(r["b_minus_a_cpu"]["median"], 3),
                fmt(r["b_minus_own_sdk"]["median"], 3),
                fmt(r["b_minus_own_sdk"]["p90"], 3),
                f"≤ {TARGET_S} s: **{'meets' if r['meets_target'] else 'misses'}**",
            ]
        )
        split_rows.append(
            [
                label,
                fmt(r["provider_import"]["median"], 3),
                fmt(r["file_exec"]["median"], 3),
                fmt(r["warm_reparse"]["median"], 3),
                fmt(r["dagbag_cold"]["median"], 3),
                fmt(r["dagbag_warm"]["median"], 3),
            ]
        )
    print(
        md_table(
            [
                "file",
                "(b)−(a) wall, median (s)",
                "(b)−(a) wall, p90 (s)",
                "(b)−(a) CPU, median (s)",
                "(b) minus its own sdk import, median (s)",
                "same, p90 (s)",
                "target (on the first column)",
            ],
            target_rows,
        )
    )
    print("\nWhere (b) goes, and re-parsing (medians, seconds):\n")
    print(
        md_table(
            [
                "file",
                "provider import",
                "DAG file exec",
                "re-exec in the same process (warm)",
                "dag-processor style: DagBag, provider not yet imported",
                "DagBag again, same process",
            ],
            split_rows,
        )
    )
    heavy_any = sorted({m for r in results.values() for m in r["heavy_modules_after_parse"]})
    print(
        f"\nHeavy modules in sys.modules after parsing: {heavy_any or 'none'}. "
        f"Import errors: {({n: r['import_errors'] for n, r in results.items() if r['import_errors']}) or 'none'}."
    )
    print(
        f"\n### `python -X importtime`: `import {PROVIDER}.taskgroup` after `import airflow.sdk` "
        f"(median of {imports['runs']})\n"
    )
    print(
        f"Total {imports['total_s'] * 1000:.0f} ms (with importtime's own overhead), {imports['new_modules']} "
        f"modules newly imported; of the self time, {imports['airflow_modules_newly_imported_s'] * 1000:.0f} ms "
        f"is Airflow modules the provider pulls in. Heavy modules: {imports['heavy_modules'] or 'none'}.\n"
    )
    print(
        md_table(
            ["top packages outside airflow (self time)", "ms"],
            [[f"`{p}`", f"{s * 1000:.1f}"] for p, s in imports["by_package_outside_airflow"][:8]],
        )
    )
    print()
    print(
        md_table(
            ["top modules outside airflow (self time)", "ms"],
            [[f"`{m}`", f"{s * 1000:.1f}"] for m, s in imports["top_modules_outside_airflow"][:10]],
        )
    )
    path = write_json(
        "parse_time",
        {
            "args": {"runs": args.runs, "importtime_runs": args.importtime_runs, "dags": str(args.dags)},
            "target_s": TARGET_S,
            "baseline_sdk": sdk,
            "files": results,
            "importtime": imports,
            "raw": {"baseline": base, "per_file": per_file},
            "elapsed_s": time.monotonic() - t_start,
        },
    )
    say(f"\nwrote {path.relative_to(REPO)} in {time.monotonic() - t_start:.0f}s total")
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
