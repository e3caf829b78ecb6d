"""AWS API calls made by the ``ec2`` backend: per lifecycle, and per second at 1000 concurrent waits.

Everything runs against moto in server mode (127.0.0.1, random port) with real boto3; the counts
are moto's request log (tests/fakes/aws.py: every request that reached the server). The SSM
agent is the test stand-in (moto has none).

a) One lifecycle as the operators drive it — ``acquire`` (lineage lookup + create), the status
   check before deferring, readiness polls, ``describe`` (evidence), teardown (log flush,
   terminate or return to pool, wait) — cold start with terminate, warm hit with return to the
   pool, side by side with the Amazon provider's ``EC2CreateInstanceOperator``
   (``wait_for_completion=True``) + ``EC2TerminateInstanceOperator`` doing the same launch.
b) ``--waits`` (1000) ``RunnerReadyTrigger`` s in one asyncio loop in a *separate process* (the
   triggerer; its CPU and peak RSS are measured there, moto's are not), all sharing one
   ``SharedStatusPoller``. Hosts come up in moto at once; the SSM stand-in registers each agent
   ``--online-after`` seconds after it is seen running, so the waits span several polls. The poll
   interval is shortened to ``--interval`` and EC2 calls/s are also given at the real 15 s.
   The unbatched alternative (one status per waiter per poll) is measured on ``--unbatched``
   waits and scaled to 1000.

    .venv/bin/python benchmarks/ec2_api_calls.py [--waits 1000] [--interval 1.0] [--online-after 6]

Prints Markdown and writes ``benchmarks/results/ec2_api_calls.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="bench-ec2-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

from benchmarks._common import RESULTS, machine, machine_line, md_table

REAL_INTERVAL = 15.0
EC2_DESCRIBE_REFILL = 20.0
SPEC = {
    "runner_class": "dedicated_host",
    "profile": "Large",
    "image": "hardened-base@2026.11",
    "tags": {"tenant": "bench"},
    "ttl": "1h",
}

CHILD = r"""
import asyncio, json, os, resource, sys, time
from datetime import UTC, datetime, timedelta
ids, interval, conn_id = json.load(open(sys.argv[1])), float(sys.argv[2]), sys.argv[3]
from airflow.sdk import BaseHook  # noqa: F401 - a triggerer has Airflow loaded already
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger
from airflow_provider_runners.backends.ec2.backend import Ec2Backend
polls, _status_many = [0], Ec2Backend.status_many
def counted(self, handles):  # one call per poll cycle of the shared poller
    polls[0] += 1
    return _status_many(self, handles)
Ec2Backend.status_many = counted
now = datetime.now(UTC)
def handle(iid):
    return RunnerHandle(backend="ec2", runner_class="dedicated_host", resource_id=iid, conn_id=conn_id,
                        lineage_key="rl" + "0" * 26, attempt_token="rl" + "0" * 26 + "-t1", created_at=now,
                        expires_at=now + timedelta(hours=1), environment="aws", profile="Large")
deadline = (now + timedelta(hours=1)).isoformat()
triggers = [RunnerReadyTrigger(conn_id, handle(i).to_xcom(), deadline, poll_interval=interval) for i in ids]
async def one(t):
    async for event in t.run():
        return event.payload["status"]
start = time.monotonic()
async def main():
    return await asyncio.wait_for(asyncio.gather(*(one(t) for t in triggers)), 600)
statuses = asyncio.run(main())
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"resume_all_s": time.monotonic() - start, "ready": statuses.count("ready"), "polls": polls[0],
                  "cpu_s": usage.ru_utime + usage.ru_stime, "max_rss_mib": usage.ru_maxrss / 1024}))
"""


def _split(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items()))


def _total(counts: Counter[str], service: str | None = None) -> int:
    return sum(n for key, n in counts.items() if service is None or key.startswith(service + ":"))


def lifecycle(env: Any, request: Any) -> dict[str, Any]:
    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.core.backend import RunnerState
    from airflow_provider_runners.core.lifecycle import acquire
    from tests.fakes.ec2_env import RUNNER_CONN_ID

    results: dict[str, Any] = {}
    for name, spec, dag in (
        ("cold start, terminate", SPEC, "cold"),
        ("pool seed (cold start, return to pool)", {**SPEC, "options": {"teardown": "pool"}}, "seed"),
        ("warm hit, return to pool", {**SPEC, "options": {"teardown": "pool"}}, "warm"),
    ):
        backend = get_backend(RUNNER_CONN_ID)
        backend.client("ec2"), backend.client("ssm"), backend.client("dynamodb")  # no calls: clients only
        backend.claims()
        mark = time.monotonic()
        handle, _ = acquire(backend, request(spec, dag))
        polls = 1
        status = backend.status(handle)  # the operator's check before deferring
        while status.state is not RunnerState.READY:
            polls += 1
            status = backend.status_many([handle])[handle.resource_id]
        backend.describe(handle)
        ready = env.server.counts(since=mark)
        mark2 = time.monotonic()
        backend.teardown(handle)
        down = env.server.counts(since=mark2)
        results[name] = {
            "provision": _split(ready),
            "teardown": _split(down),
            "status_polls": polls,
            "total": _total(ready) + _total(down),
            "ec2": _total(ready, "ec2") + _total(down, "ec2"),
        }
    return results


def airflow_operators(env: Any) -> dict[str, Any]:
    from airflow.providers.amazon.aws.operators.ec2 import (
        EC2CreateInstanceOperator,
        EC2TerminateInstanceOperator,
    )

    from tests.fakes.ec2_env import AWS_CONN_ID, REGION

    class _TI:
        def xcom_push(self, key: str, value: Any) -> None:
            pass

    context: Any = {"ti": _TI(), "task_instance": _TI()}
    config = {
        "InstanceType": "r5.2xlarge",
        "SubnetId": env.ids["private"],
        "SecurityGroupIds": [env.ids["sg"]],
        "IamInstanceProfile": {"Name": "runner-host"},
        "InstanceInitiatedShutdownBehavior": "terminate",
    }
    mark = time.monotonic()
    create = EC2CreateInstanceOperator(
        task_id="create",
        image_id=env.ids["ami"],
        aws_conn_id=AWS_CONN_ID,
        region_name=REGION,
        config=config,
        wait_for_completion=True,
        poll_interval=1,
    )
    ids = create.execute(context)
    up = env.server.counts(since=mark)
    mark2 = time.monotonic()
    EC2TerminateInstanceOperator(
        task_id="terminate",
        instance_ids=ids,
        aws_conn_id=AWS_CONN_ID,
        region_name=REGION,
        wait_for_completion=True,
        poll_interval=1,
    ).execute(context)
    down = env.server.counts(since=mark2)
    return {"provision": _split(up), "teardown": _split(down), "total": _total(up) + _total(down)}


def waits(env: Any, n: int, interval: float, online_after: float) -> dict[str, Any]:
    from airflow_provider_runners.core.lineage import MANAGED_BY
    from tests.fakes.ec2_env import RUNNER_CONN_ID

    ec2 = env.client("ec2")
    ids: list[str] = []
    while len(ids) < n:
        batch = min(500, n - len(ids))
        reservation = ec2.run_instances(  # tagged as the backend tags its hosts: status_many reads by tag
            ImageId=env.ids["ami"],
            MinCount=batch,
            MaxCount=batch,
            InstanceType="r5.2xlarge",
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "managed-by", "Value": MANAGED_BY}]}
            ],
        )
        ids += [i["InstanceId"] for i in reservation["Instances"]]
    env.agent.running_since.clear()
    env.agent.online_after_s = online_after
    ids_file = Path(os.environ["AIRFLOW_HOME"]) / "ids.json"
    ids_file.write_text(json.dumps(ids))
    child_env = {**os.environ, "PYTHONPATH": str(REPO)}
    mark = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ids_file), str(interval), RUNNER_CONN_ID],
        env=child_env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    wall = time.monotonic() - mark
    child = json.loads(out.stdout.strip().splitlines()[-1])
    counts = env.server.counts(since=mark)
    ec2_calls = _total(counts, "ec2")
    window = child["resume_all_s"]
    return {
        "n": n,
        "ids": ids,
        "child": child,
        "wall_s": wall,
        "calls": _split(counts),
        "ec2_calls": ec2_calls,
        "ec2_per_s": ec2_calls / window,
        "ssm_calls": _total(counts, "ssm"),
        "window_s": window,
    }


def unbatched(env: Any, ids: list[str]) -> dict[str, Any]:
    """One status per waiter per poll: the Backend.status_many fallback / a per-host trigger."""
    from datetime import UTC, datetime, timedelta

    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.core.handles import RunnerHandle
    from tests.fakes.ec2_env import RUNNER_CONN_ID

    backend = get_backend(RUNNER_CONN_ID)
    now = datetime.now(UTC)
    mark = time.monotonic()
    for iid in ids:
        handle = RunnerHandle(
            backend="ec2",
            runner_class="dedicated_host",
            resource_id=iid,
            conn_id=RUNNER_CONN_ID,
            lineage_key="rl" + "0" * 26,
            attempt_token="x",
            created_at=now,
            expires_at=now + timedelta(hours=1),
            environment="aws",
            profile="Large",
        )
        backend.status(handle)
    counts = env.server.counts(since=mark)
    return {"n": len(ids), "calls": _split(counts), "ec2_per_poll": _total(counts, "ec2")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waits", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval used in the measurement")
    parser.add_argument(
        "--online-after", type=float, default=6.0, help="seconds until an SSM agent is online"
    )
    parser.add_argument("--unbatched", type=int, default=100, help="waits measured for the unbatched side")
    args = parser.parse_args(argv)

    from airflow_provider_runners.backends.ec2.backend import Ec2Backend
    from airflow_provider_runners.core.backend import ProvisionRequest
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.lineage import Lineage
    from airflow_provider_runners.core.specs import RunnerSpec
    from tests.fakes.ec2_env import RUNNER_CONN_ID, start_env, stop_env

    Ec2Backend.teardown_poll_s = 0.05
    env = start_env(Path(tempfile.mkdtemp(prefix="bench-ec2-host-")))
    os.environ.update(env.connections())
    info = machine()

    def request(spec: dict[str, Any], dag: str) -> Any:
        parsed = RunnerSpec.parse(spec)
        lineage = Lineage(dag, "run-1", "host.provision")
        resolved = resolve_spec(parsed, backend="ec2", catalog_path=env.catalog_path)
        return ProvisionRequest.build(
            resolved, lineage, lineage.attempt_token(1), RUNNER_CONN_ID, {"tenant": "bench"}
        )

    try:
        sys.stderr.write("lifecycles ...\n")
        ours = lifecycle(env, request)
        theirs = airflow_operators(env)
        sys.stderr.write(f"{args.waits} waits in one triggerer process ...\n")
        load = waits(env, args.waits, args.interval, args.online_after)
        flat = unbatched(env, load.pop("ids")[: args.unbatched])
    finally:
        stop_env(env)

    polls = max(1.0, float(load["child"]["polls"]))  # status_many calls in the triggerer = poll cycles
    ec2_per_poll = load["ec2_calls"] / polls
    at_real = ec2_per_poll / REAL_INTERVAL
    flat_per_poll = flat["ec2_per_poll"] * args.waits / max(1, flat["n"])
    print("## EC2 backend: API calls (moto request log)\n")
    print(machine_line(info) + "\n")
    rows = []
    for name, r in ours.items():
        rows.append(
            [
                f"`ec2` backend: {name}",
                r["status_polls"],
                r["ec2"],
                r["total"],
                ", ".join(
                    f"{k} {v}" for k, v in {**Counter(r["provision"]) + Counter(r["teardown"])}.items()
                ),
            ]
        )
    rows.append(
        [
            "`EC2CreateInstanceOperator` + `EC2TerminateInstanceOperator` (wait_for_completion)",
            "-",
            _total(Counter(theirs["provision"]) + Counter(theirs["teardown"]), "ec2"),
            theirs["total"],
            ", ".join(
                f"{k} {v}" for k, v in (Counter(theirs["provision"]) + Counter(theirs["teardown"])).items()
            ),
        ]
    )
    print(md_table(["lifecycle", "status polls", "EC2 calls", "all AWS calls", "calls"], rows, "lrrrl"))
    print()
    print(
        md_table(
            [
                "N waits",
                "resume all (s)",
                "triggerer CPU (s)",
                "triggerer peak RSS (MiB)",
                f"EC2 calls during the wait (poll every {args.interval:g} s)",
                "poll cycles",
                "EC2 calls per poll",
                "EC2 calls/s at 15 s poll",
                "SSM calls",
                "unbatched EC2 calls/s at 15 s (scaled)",
            ],
            [
                [
                    load["n"],
                    f"{load['child']['resume_all_s']:.1f}",
                    f"{load['child']['cpu_s']:.1f}",
                    f"{load['child']['max_rss_mib']:.0f}",
                    f"{load['ec2_calls']} ({load['ec2_per_s']:.1f}/s)",
                    f"{polls:.0f}",
                    f"{ec2_per_poll:.1f}",
                    f"{at_real:.2f}",
                    load["ssm_calls"],
                    f"{flat_per_poll / REAL_INTERVAL:.0f}",
                ]
            ],
        )
    )
    print(
        f"\nTarget: <= {EC2_DESCRIBE_REFILL:.0f} EC2 calls/s (Describe refill rate). Unbatched side measured on "
        f"{flat['n']} waits ({flat['ec2_per_poll']} EC2 calls per poll) and scaled to {args.waits}."
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ec2_api_calls.json").write_text(
        json.dumps(
            {
                "machine": info,
                "args": vars(args),
                "lifecycle": ours,
                "airflow_operators": theirs,
                "waits": load,
                "unbatched": flat,
                "ec2_per_poll": ec2_per_poll,
                "ec2_per_s_at_15s": at_real,
            },
            indent=2,
            default=str,
        )
    )
    return 0 if load["child"]["ready"] == args.waits else 1


if __name__ == "__main__":
    sys.exit(main())
