"""EC2 warm pool: time to ready, warm hit vs cold start — AWS API calls measured, boot time modelled.

    .venv/bin/python benchmarks/ec2_warm_pool.py [--reps 3] [--poll 15]

What is **measured** (moto in server mode on 127.0.0.1, real boto3, the SSM agent stand-in of
tests/fakes/aws.py; counts are the server's request log, ``MotoServer.calls``):

* **cold start** — ``acquire`` (lineage lookup, AMI check, ``RunInstances``), the status check before
  deferring, readiness polls until READY, ``describe`` for the evidence;
* **warm hit** — the same on a Connection with a ``warm_pools`` entry whose stopped, idle host was
  made by ``warm_pool.maintain`` beforehand (claim in DynamoDB, re-tag, ``StartInstances``);
* **pool refill** — what ``warm_pool.maintain`` spends to put one stopped host into the pool (off
  the task's path: the maintenance DAG pays it);
* the calls of **one readiness poll** per state (pending / running, checks not ok / checks ok),
  measured by moving the stand-in's state, so the modelled wait below can be priced in calls.

moto has no boot time: instances are ``running`` with status checks ``ok`` at once. So the time to
ready is **modelled**, from the figures below (command-line flags; none is measured here). The
backend calls a host READY when it is ``running``, both status checks are ``ok`` and the SSM agent
is ``Online`` (backends/ec2/backend.py ``_status_of``, docs/ec2.md), and a waiting trigger sees it at
its next poll (``--poll``, 15 s by default, plus the in-task check before deferring).

Markdown to stdout, JSON to ``benchmarks/results/ec2_warm_pool.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="bench-ec2pool-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

from benchmarks._common import RESULTS, machine, machine_line, md_table

SPEC: dict[str, Any] = {
    "runner_class": "dedicated_host",
    "profile": "Large",
    "image": "hardened-base@2026.11",
    "tags": {"tenant": "bench"},
    "ttl": "1h",
    "options": {"teardown": "pool"},
}
WARM = {"bench": {"profile": "Large", "image": "hardened-base@2026.11", "min_size": 1, "max_size": 4}}

# Modelled boot figures (seconds), assumptions, not measurements. Each phase starts when the
# previous one ends; the defaults are typical of a current-generation Nitro instance with an
# EBS-backed Linux AMI and can be replaced with an account's own figures.
MODEL: dict[str, dict[str, float]] = {
    "cold start (RunInstances)": {
        "pending -> running": 20.0,  # ENI + EBS root volume from the AMI snapshot + placement
        "OS boot, first-boot cloud-init, SSM agent registers": 45.0,
        "status checks ok after running": 120.0,  # reachability checks report per minute
    },
    "warm hit (StartInstances of a stopped host)": {
        "pending -> running": 15.0,  # EBS volume exists and is hydrated; no snapshot lazy-load
        "OS boot, SSM agent registers": 25.0,  # no first-boot cloud-init / image setup
        "status checks ok after running": 120.0,  # status checks re-initialise after a start
    },
}


def _total(counts: Counter[str], service: str | None = None) -> int:
    return sum(n for key, n in counts.items() if service is None or key.startswith(service + ":"))


def _fmt_calls(counts: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def provision(env: Any, request: Any, dag: str) -> dict[str, Any]:
    """acquire → status before deferring → polls until READY → describe, with the calls of each."""
    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.core.backend import RunnerState
    from airflow_provider_runners.core.lifecycle import acquire
    from tests.fakes.ec2_env import RUNNER_CONN_ID

    backend = get_backend(RUNNER_CONN_ID)
    backend.client("ec2"), backend.client("ssm"), backend.client("dynamodb")  # clients: no calls
    backend.claims()
    phases: dict[str, Counter[str]] = {}
    mark = time.monotonic()
    handle, _ = acquire(backend, request(SPEC, dag))
    phases["acquire"] = env.server.counts(since=mark)
    mark = time.monotonic()
    polls = 1
    status = backend.status(handle)
    while status.state is not RunnerState.READY:
        polls += 1
        status = backend.status_many([handle])[handle.resource_id]
    phases["readiness"] = env.server.counts(since=mark)
    mark = time.monotonic()
    backend.describe(handle)
    phases["describe"] = env.server.counts(since=mark)
    all_calls: Counter[str] = sum(phases.values(), Counter())
    return {
        "handle": handle,
        "acquired": handle.details.get("acquired"),
        "polls": polls,
        "phases": {k: dict(v) for k, v in phases.items()},
        "calls": dict(all_calls),
        "total": _total(all_calls),
        "ec2": _total(all_calls, "ec2"),
    }


def refill(env: Any) -> dict[str, Any]:
    """warm_pool.maintain launching one host into an empty pool (min_size 1)."""
    from airflow_provider_runners.backends.ec2 import warm_pool
    from airflow_provider_runners.backends.registry import get_backend
    from tests.fakes.ec2_env import RUNNER_CONN_ID

    mark = time.monotonic()
    report = warm_pool.maintain(get_backend(RUNNER_CONN_ID), catalog_path=env.catalog_path)
    counts = env.server.counts(since=mark)
    launched = report.summary()["launched"]
    if len(launched) != 1 or report.errors:
        raise RuntimeError(f"pool refill launched {launched}, errors {report.errors}")
    return {"calls": dict(counts), "total": _total(counts), "ec2": _total(counts, "ec2")}


def teardown(env: Any, handle: Any) -> dict[str, Any]:
    from airflow_provider_runners.backends.registry import get_backend
    from tests.fakes.ec2_env import RUNNER_CONN_ID

    mark = time.monotonic()
    get_backend(RUNNER_CONN_ID).teardown(handle)
    counts = env.server.counts(since=mark)
    return {"calls": dict(counts), "total": _total(counts)}


def poll_costs(env: Any, handle: Any) -> dict[str, dict[str, Any]]:
    """Calls of one status poll of one host in each readiness state, set on the moto backend."""
    from moto.ec2.models import ec2_backends

    from airflow_provider_runners.backends.registry import get_backend
    from tests.fakes.aws import ACCOUNT
    from tests.fakes.ec2_env import REGION, RUNNER_CONN_ID

    backend = get_backend(RUNNER_CONN_ID)
    inst = ec2_backends[ACCOUNT][REGION].get_instance(handle.resource_id)
    out: dict[str, dict[str, Any]] = {}

    def one(name: str) -> None:
        mark = time.monotonic()
        status = backend.status(handle)
        counts = env.server.counts(since=mark)
        out[name] = {"state": status.state.value, "calls": dict(counts), "total": _total(counts)}

    name, code = inst._state.name, inst._state.code
    inst._state.name, inst._state.code = "pending", 0  # moto's instance, in this process
    one("pending")
    inst._state.name, inst._state.code = name, code
    env.agent.running_since.clear()
    env.agent.online_after_s = 3600.0
    one("running, checks ok, SSM agent not online")
    env.agent.online_after_s = 0.0
    one("ready")
    return out


def model(poll_s: float, polls: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Modelled time to READY, the mean time the trigger sees it (half a poll later) and the calls
    that wait costs at ``poll_s``. The agent and the status checks run in parallel after ``running``.

    Poll prices: ``pending`` and ``ready`` are measured (:func:`poll_costs`); a running host whose
    checks are not ``ok`` yet costs DescribeInstances + DescribeInstanceStatus (2: status_many asks
    SSM only about hosts whose checks are ok), one whose checks are ok but agent is not, the
    measured 3. ``without status-check gate`` is the same host if READY needed only the SSM agent.
    """
    out = {}
    for path, phases in MODEL.items():
        running, agent, checks = phases.values()
        ready = running + max(agent, checks)
        seen = ready + poll_s / 2
        pending_polls = math.ceil(running / poll_s)
        total_polls = math.ceil(seen / poll_s)
        calls = polls["pending"]["total"] * pending_polls
        for n in range(pending_polls, total_polls - 1):  # running, not ready yet
            checks_ok = n * poll_s >= running + checks
            calls += polls["running, checks ok, SSM agent not online"]["total"] if checks_ok else 2
        calls += polls["ready"]["total"]
        out[path] = {
            "phases_s": phases,
            "ready_s": ready,
            "seen_s": seen,
            "polls": total_polls,
            "poll_calls": calls,
            "ready_without_checks_gate_s": running + agent,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="cold and warm provisions each (counts)")
    parser.add_argument("--poll", type=float, default=15.0, help="trigger poll interval in the model (s)")
    args = parser.parse_args(argv)

    from airflow_provider_runners.backends.ec2.backend import Ec2Backend
    from airflow_provider_runners.core.backend import ProvisionRequest
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.lineage import Lineage
    from airflow_provider_runners.core.specs import RunnerSpec
    from tests.fakes.ec2_env import RUNNER_CONN_ID, start_env, stop_env

    Ec2Backend.teardown_poll_s = 0.05
    env = start_env(Path(tempfile.mkdtemp(prefix="bench-ec2pool-host-")))
    info = machine()

    def request(spec: dict[str, Any], dag: str) -> Any:
        parsed = RunnerSpec.parse(spec)
        lineage = Lineage(dag, "run-1", "host.provision")
        resolved = resolve_spec(parsed, backend="ec2", catalog_path=env.catalog_path)
        return ProvisionRequest.build(
            resolved, lineage, lineage.attempt_token(1), RUNNER_CONN_ID, {"tenant": "bench"}
        )

    cold: list[dict[str, Any]] = []
    warm: list[dict[str, Any]] = []
    refills: list[dict[str, Any]] = []
    teardowns: list[dict[str, Any]] = []
    wall: dict[str, list[float]] = {"cold": [], "warm": []}
    try:
        for rep in range(args.reps):
            # cold: no warm_pools entry and nothing idle (each rep's host is terminated below)
            os.environ.update(env.connections())
            start = time.monotonic()
            c = provision(env, request, f"cold{rep}")
            wall["cold"].append(time.monotonic() - start)
            if c["acquired"] != "cold":
                raise RuntimeError(f"cold rep {rep} acquired {c['acquired']}")
            env.client("ec2").terminate_instances(InstanceIds=[c.pop("handle").resource_id])
            cold.append(c)
            # warm: the pool's maintenance puts one stopped idle host in, then a provision claims it
            os.environ.update(env.connections(warm_pools=WARM))
            refills.append(refill(env))
            start = time.monotonic()
            w = provision(env, request, f"warm{rep}")
            wall["warm"].append(time.monotonic() - start)
            if w["acquired"] != "warm":
                raise RuntimeError(f"warm rep {rep} acquired {w['acquired']}")
            handle = w.pop("handle")
            warm.append(w)
            if rep == args.reps - 1:
                polls = poll_costs(env, handle)
            teardowns.append(teardown(env, handle))  # back to the pool (stop, re-tag, release)
            env.client("ec2").terminate_instances(InstanceIds=[handle.resource_id])
    finally:
        stop_env(env)

    def same(runs: list[dict[str, Any]], key: str = "calls") -> bool:
        return all(r[key] == runs[0][key] for r in runs)

    modelled = model(args.poll, polls)
    c0, w0, r0 = cold[0], warm[0], refills[0]
    print(f"## EC2 warm pool: time to ready, warm hit vs cold start ({args.reps} reps each)\n")
    print(machine_line(info) + "\n")
    print("**Measured: AWS API calls per provision until READY** (moto request log)\n")
    rows = []
    for name, r in (("cold start", c0), ("warm hit", w0)):
        rows.append(
            [
                name,
                r["polls"],
                sum(r["phases"]["acquire"].values()),
                sum(r["phases"]["readiness"].values()),
                r["ec2"],
                r["total"],
                _fmt_calls(Counter(r["calls"])),
            ]
        )
    rows.append(
        [
            "pool refill (maintenance, off the task's path)",
            "-",
            "-",
            "-",
            r0["ec2"],
            r0["total"],
            _fmt_calls(Counter(r0["calls"])),
        ]
    )
    print(
        md_table(
            [
                "path",
                "status polls",
                "acquire calls",
                "readiness calls",
                "EC2 calls",
                "all AWS calls",
                "calls",
            ],
            rows,
            "lrrrrrl",
        )
    )
    print(
        f"\nCounts identical over the reps: cold {same(cold)}, warm {same(warm)}, refill {same(refills)}. "
        f"Warm / cold, all calls: {w0['total'] / c0['total']:.2f}x; warm + its refill / cold: "
        f"{(w0['total'] + r0['total']) / c0['total']:.2f}x. moto wall time per provision (not boot time): "
        f"cold {min(wall['cold']):.2f}-{max(wall['cold']):.2f} s, warm {min(wall['warm']):.2f}-{max(wall['warm']):.2f} s.\n"
    )
    print("Calls of one readiness poll of one host:\n")
    print(
        md_table(
            ["host state", "status", "calls"],
            [[k, v["state"], f"{v['total']} ({_fmt_calls(Counter(v['calls']))})"] for k, v in polls.items()],
            "lll",
        )
    )
    print(
        f"\n**Modelled (not measured): time to READY** from assumed boot figures, trigger poll {args.poll:g} s\n"
    )
    mrows = []
    for path, m in modelled.items():
        mrows.append(
            [
                path,
                "; ".join(f"{k} {v:.0f} s" for k, v in m["phases_s"].items()),
                f"{m['ready_s']:.0f}",
                f"{m['seen_s']:.1f}",
                m["polls"],
                m["poll_calls"],
                f"{m['ready_without_checks_gate_s']:.0f}",
            ]
        )
    print(
        md_table(
            [
                "path",
                "assumed phases",
                "READY (s)",
                "seen by the trigger, mean (s)",
                "polls",
                "poll calls",
                "READY without the status-check gate (s)",
            ],
            mrows,
            "llrrrrr",
        )
    )
    cold_m, warm_m = modelled.values()
    print(
        f"\nModelled warm / cold time to READY: {warm_m['ready_s'] / cold_m['ready_s']:.2f}x "
        f"({warm_m['ready_s']:.0f} vs {cold_m['ready_s']:.0f} s); without the status-check gate "
        f"{warm_m['ready_without_checks_gate_s'] / cold_m['ready_without_checks_gate_s']:.2f}x "
        f"({warm_m['ready_without_checks_gate_s']:.0f} vs {cold_m['ready_without_checks_gate_s']:.0f} s)."
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ec2_warm_pool.json").write_text(
        json.dumps(
            {
                "machine": info,
                "args": vars(args),
                "cold": cold,
                "warm": warm,
                "refill": refills,
                "teardown_to_pool": teardowns,
                "poll_costs": polls,
                "wall_s": wall,
                "model": modelled,
            },
            indent=2,
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
