"""Helpers shared by the benchmarks: statistics, Markdown tables, machine facts, JSON output.

Only the standard library is imported here: the benchmarks set AIRFLOW_HOME and friends
before anything imports Airflow, and Dask worker processes (spawned) re-import the main
module, so the import side of this file must stay cheap.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
PYTHON = Path(sys.executable)


def summarize(values: Iterable[float]) -> dict[str, Any]:
    """n, median, p90, min, max. p90 interpolates between order statistics (inclusive method)."""
    data = sorted(float(v) for v in values)
    if not data:
        return {"n": 0, "median": None, "p90": None, "min": None, "max": None}
    p90 = statistics.quantiles(data, n=10, method="inclusive")[8] if len(data) > 1 else data[0]
    return {
        "n": len(data),
        "median": statistics.median(data),
        "p90": p90,
        "min": data[0],
        "max": data[-1],
    }


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one char per column: l(eft) or r(ight), default l then r."""
    align = align or "l" + "r" * (len(headers) - 1)
    marks = [":---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _meminfo_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_gib": _meminfo_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_1_5_15": os.getloadavg(),
        "packages": {
            name: _version(name)
            for name in (
                "apache-airflow",
                "apache-airflow-task-sdk",
                "dask",
                "distributed",
                "pandas",
                "pyarrow",
            )
        },
    }


def machine_line(info: dict[str, Any]) -> str:
    pkgs = info["packages"]
    return (
        f"{info['cpus']} CPUs ({info['cpu_model']}), {info['mem_gib']} GiB RAM, Python {info['python']}, "
        f"Airflow {pkgs.get('apache-airflow')}, dask/distributed {pkgs.get('dask')}/{pkgs.get('distributed')}"
    )


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the package had uncommitted changes at the time."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "package_changes": git("status", "--porcelain", "--", "airflow_provider_runners").splitlines(),
    }


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "recorded_at": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "git": git_state(),
        **data,
    }
    path.write_text(json.dumps(payload, indent=1, sort_keys=False, default=str) + "\n")
    return path


def uptime() -> str:
    """What ``uptime`` prints (the load averages of the machine, other sessions included)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())
