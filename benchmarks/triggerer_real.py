"""Issue 18, item 6: N deferred provision waits in a real ``airflow triggerer`` — our shared
poller (:class:`~airflow_provider_runners.triggers.readiness.RunnerReadyTrigger`) vs the same N
as one trigger per wait (the peers' pattern, ``benchmarks/_one_wait_trigger.py``).

    .venv/bin/python benchmarks/triggerer_real.py --n 200 1000

Starts the deployment of tests/support/deployment.py (scheduler, dag-processor, triggerer,
api-server; LocalExecutor; PostgreSQL at 127.0.0.1:5432, a database of its own, dropped after)
with benchmarks/dags/triggerer_real_dags.py, and an emulated HTTP bench platform in this process
that the provider's real ``bench_http`` backend polls (``GET /reservations?ids=…``, the contract of
docs/bench_http.openapi.yaml). For each N and each side, with a freshly started triggerer:

1. **Warm-up**: ``--warmup`` waits of that side whose benches are ready at once (imports the
   trigger's modules; not measured). Then the triggerer's memory with 0 triggers (baseline).
2. **N waits**: a DAG run of ``triggerer_real``; its ``wait`` task instances 0 … N−1 are put in
   the DEFERRED state with a Trigger row each, as the Execution API does when a task defers
   (no task process per wait). Their reservations stay ``preparing``. For ``ours``, each runner
   also gets its registry record (``running``), as a provision registers it before deferring,
   so the trigger's heartbeats write as they do in use.
3. **Steady window**: once every trigger has started (its trigger log file exists) and the
   platform has been asked about every reservation (not for ``floor`` and ``silent``; ``ours``:
   and each trigger has logged its first status), two more
   intervals, then ``--window-polls`` poll intervals: CPU of the triggerer's processes
   (supervisor + trigger runner subprocess), their RSS (and USS/PSS), the status calls the
   platform answered, and each process's full (generation-2) garbage collections, logged by
   benchmarks/sitecustomize.py: in a trigger runner of a few hundred thousand objects one takes
   a few hundred ms, so whether the window holds one moves its CPU figure at N=200.
4. **Ready**: each reservation turns ``ready`` at its own instant, spread uniformly over two
   poll intervals from one second after the window; latency = that instant → the task instance's
   ``updated_at`` when the triggerer's event moves it out of DEFERRED (``Trigger.submit_event``).
   Split at the first status call the platform answered ``ready`` for it: *detection* (the
   poll) and *handover* (the trigger's event → ``submit_event``).
   The DAG is paused, so no task process resumes (the scheduler would then queue it: one
   scheduler loop plus the executor's start).

``--backend kubernetes`` (``_triggerer_kube.py``): the waits are pods in the Kubernetes API
server emulator, which this process patches to Running; ours detects by LIST + WATCH.

A third side, ``floor``, defers Airflow's own ``DateTimeTrigger`` (no backend; all fire at one
moment after the window). It logs a line every 10 s, and every second in its last 20 s, so its
CPU is mostly those lines; ``silent`` (``benchmarks/_one_wait_trigger.py``) sleeps once and logs
nothing: what the triggerer costs per trigger whatever the trigger does.
All sides: the same backend and Connection, the same poll interval (``--poll-interval``, 5 s).
Not part of CI. Prints Markdown; the rows go to ``benchmarks/results/triggerer_real.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from _common import PYTHON, REPO, git_state, machine, summarize, uptime, write_json
from _triggerer_real_report import ROLES, full_collections, report

sys.path.insert(0, str(REPO))

DAG_FILE = "benchmarks/dags/triggerer_real_dags.py"
DAG_ID = "triggerer_real"
CONN_ID = "runners_bench_real"
FIRE_AT_ONCE = ("floor", "silent")  # no backend: every trigger fires at one moment after the window
SIDES = {
    "ours": "RunnerReadyTrigger (shared poller, batched status_many)",
    "peer": "one trigger per wait (own status call per interval)",
    "floor": "Airflow's DateTimeTrigger (sleeps, no backend, a log line every 10 s)",
    "silent": "a trigger that sleeps once and logs nothing: the triggerer's own cost per trigger",
}


# -- the emulated bench platform ------------------------------------------------------------------
class Platform:
    """Reservations that are ``preparing`` until their ``ready_at`` (epoch s), then ``ready``;
    counts the status calls (``GET /reservations``) and which reservations they asked about."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready_at: dict[str, float] = {}
        self.calls = 0
        self.ids_asked = 0
        self.seen: set[str] = set()
        #: reservation -> when a status call first answered ``ready`` for it (detection)
        self.first_ready: dict[str, float] = {}
        self.flipped: dict[str, float] = {}  # ready at its planned instant (KubePlatform: patched)
        self.server = self.serve()

    def connection(self, poll_interval: float) -> dict[str, Any]:
        return {
            "conn_type": "runners_bench_http",
            "host": "127.0.0.1",
            "port": self.server.server_address[1],
            "schema": "http",
            "password": "bench-token",
            "extra": {"poll_interval_s": poll_interval},
        }

    def reset(self) -> None:
        """Nothing to delete: reservations of earlier rows are not asked about again."""

    def stop(self) -> None:
        self.server.shutdown()

    def add(self, ids: list[str], ready_at: float) -> None:
        with self.lock:
            for rid in ids:
                self.ready_at[rid] = ready_at

    def answer(self, ids: list[str]) -> dict[str, Any]:
        now = time.time()
        with self.lock:
            self.calls += 1
            self.ids_asked += len(ids)
            self.seen.update(ids)
            known = [(rid, self.ready_at[rid]) for rid in ids if rid in self.ready_at]
            for rid, ready_at in known:
                if now >= ready_at:
                    self.first_ready.setdefault(rid, now)
        created = datetime.fromtimestamp(now - 60, UTC).isoformat()
        out = []
        for rid, ready_at in known:
            ready = now >= ready_at
            out.append(
                {
                    "id": rid,
                    "state": "ready" if ready else "preparing",
                    "bench_id": f"bench-{rid}",
                    "owner": f"airflow/{rid}",
                    "message": "prepared" if ready else "checking readiness",
                    "created_at": created,
                    "allocated_at": datetime.fromtimestamp(ready_at, UTC).isoformat() if ready else None,
                    "tags": {},
                    "bench_tags": {"board": "bench"},
                }
            )
        return {"reservations": out}

    def serve(self) -> ThreadingHTTPServer:
        platform = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as an API's clients use it

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path != "/reservations":
                    self.send_error(404)
                    return
                ids = [i for i in parse_qs(url.query).get("ids", [""])[0].split(",") if i]
                body = json.dumps(platform.answer(ids)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.request_queue_size = 1024
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


# -- deferring task instances (a child process with the deployment's Airflow configuration) -------
DEFER = r"""
import json, sys
from datetime import UTC, datetime, timedelta
from sqlalchemy import select
from airflow.models.dagbag import DBDagBag
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.models.trigger import Trigger
from airflow.utils.session import create_session
from airflow.utils.state import TaskInstanceState
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.governance.runner_index import RunnerRecord, open_registry
from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger
from _one_wait_trigger import OneWaitTrigger, SilentSleepTrigger
from airflow.providers.standard.triggers.temporal import DateTimeTrigger

spec = json.loads(sys.argv[1])
now = datetime.now(UTC)
deadline = (now + timedelta(hours=2)).isoformat()
registry = open_registry()  # the deployment's: a provision that defers has registered its runner
with create_session() as session:
    run = session.scalars(select(DagRun).where(DagRun.dag_id == spec["dag_id"], DagRun.run_id == spec["run_id"])).one()
    dag = DBDagBag().get_dag_for_run(run, session=session)
    task = dag.get_task("wait")
    tis = {ti.map_index: ti for ti in session.scalars(select(TaskInstance).where(
        TaskInstance.dag_id == spec["dag_id"], TaskInstance.run_id == spec["run_id"], TaskInstance.task_id == "wait"))}
    for i, rid in enumerate(spec["ids"]):
        ti = tis.get(i)
        if ti is None:
            ti = TaskInstance(task, dag_version_id=run.created_dag_version_id, run_id=run.run_id, map_index=i)
            session.add(ti)
        lineage = f"rl{spec['tag']}{i:08d}".ljust(28, "0")[:28]
        kube = spec["backend"] == "kubernetes"
        handle = RunnerHandle(backend=spec["backend"], runner_class="pod" if kube else "bench", resource_id=rid,
                              conn_id=spec["conn_id"], lineage_key=lineage, attempt_token=lineage + "-t1",
                              created_at=now, expires_at=now + timedelta(hours=2), environment="bench",
                              profile="bench", details={"namespace": "bench", "mode": "command"} if kube
                              else {"reservation": rid}).to_xcom()
        if spec["side"] == "ours":
            registry.put(RunnerRecord(key=lineage, backend=spec["backend"], conn_id=spec["conn_id"], status="running",
                                      resource_id=rid, holder=lineage + "-t1", dag_id=spec["dag_id"],
                                      run_id=spec["run_id"], task_id="wait", map_index=i,
                                      registered_at=now.timestamp(), last_heartbeat=now.timestamp(),
                                      expires_at=(now + timedelta(hours=2)).timestamp()))
            trigger = RunnerReadyTrigger(spec["conn_id"], handle, deadline, poll_interval=spec["poll"],
                                         provision_ti={"dag_id": spec["dag_id"], "run_id": spec["run_id"],
                                                       "task_id": "wait", "map_index": i, "try_number": 1,
                                                       "lineage_key": lineage})
        elif spec["side"] == "peer":
            trigger = OneWaitTrigger(spec["conn_id"], handle, spec["poll"])
        elif spec["side"] == "silent":
            trigger = SilentSleepTrigger(spec["moment"])
        else:
            trigger = DateTimeTrigger(moment=datetime.fromtimestamp(spec["moment"], UTC))
        classpath, kwargs = trigger.serialize()
        row = Trigger(classpath=classpath, kwargs=kwargs)
        session.add(row)
        session.flush()
        ti.state = TaskInstanceState.DEFERRED
        ti.try_number = 1
        ti.start_date = now
        ti.trigger_id = row.id
        ti.next_method = "execute_complete"
        ti.next_kwargs = {}
    session.commit()
print(json.dumps({"deferred": len(spec["ids"])}))
"""


def defer(
    stack: Any,
    run_id: str,
    side: str,
    ids: list[str],
    args: argparse.Namespace,
    tag: str,
    moment: float = 0.0,
) -> None:
    spec = {"dag_id": DAG_ID, "run_id": run_id, "side": side, "ids": ids, "conn_id": CONN_ID}
    spec.update(poll=args.poll_interval, tag=tag, moment=moment, backend=args.backend)
    out = subprocess.run(
        [str(PYTHON), "-c", DEFER, json.dumps(spec)],
        env=stack.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"deferring failed:\n{out.stderr[-4000:]}")


def _db(stack: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg2

    database = stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit("/", 1)[1]
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def still_deferred(stack: Any, run_id: str) -> int:
    rows = _db(
        stack,
        "SELECT count(*) FROM task_instance WHERE dag_id = %s AND run_id = %s AND state = 'deferred'",
        DAG_ID,
        run_id,
    )
    return int(rows[0][0])


def assigned(stack: Any, run_id: str) -> int:
    """Deferred task instances of the run whose trigger a triggerer has taken."""
    rows = _db(
        stack,
        "SELECT count(*) FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
        "WHERE ti.dag_id = %s AND ti.run_id = %s AND t.triggerer_id IS NOT NULL",
        DAG_ID,
        run_id,
    )
    return int(rows[0][0])


def left_deferred_at(stack: Any, run_id: str) -> dict[int, tuple[str, float]]:
    """map_index -> (state, updated_at epoch) of the run's ``wait`` task instances."""
    rows = _db(
        stack,
        "SELECT map_index, state, updated_at FROM task_instance "
        "WHERE dag_id = %s AND run_id = %s AND task_id = 'wait' AND map_index >= 0 AND trigger_id IS NULL "
        "AND next_method IS NOT NULL",
        DAG_ID,
        run_id,
    )
    return {int(i): (str(s), u.timestamp()) for i, s, u in rows if u is not None}


def triggers_started(stack: Any, run_id: str, logged: str = "") -> int:
    """The run's ``wait`` triggers that started in the runner: each writes its log file
    (``<task instance log>.trigger.<job id>.log``) with its first line, "trigger … starting";
    with ``logged``, those whose log holds it (ours: "waiting for runner", its first status)."""
    import glob

    pattern = f"dag_id={DAG_ID}/run_id={glob.escape(run_id)}/task_id=wait/map_index=*/attempt=1.log.trigger.*"
    paths = glob.glob(str(stack.home / "logs" / pattern))
    return sum(logged.encode() in Path(p).read_bytes() for p in paths) if logged else len(paths)


# -- the triggerer's processes --------------------------------------------------------------------
def triggerer_tree(stack: Any) -> list[Any]:
    import psutil

    root = psutil.Process(stack.procs["triggerer"].pid)
    return [root, *root.children(recursive=True)]


def sample(stack: Any, full: bool = False) -> dict[str, Any]:
    """RSS (and with ``full`` USS/PSS, from smaps) and CPU seconds of every triggerer process."""
    procs = []
    for k, p in enumerate(triggerer_tree(stack)):
        with p.oneshot():
            cpu = p.cpu_times()
            cmd = " ".join(p.cmdline()[:3])[-60:]
            role = "supervisor" if k == 0 else "serve-logs" if "serve-logs" in cmd else "runner"
            row = {"pid": p.pid, "role": role, "cmd": cmd, "rss": p.memory_info().rss}
            row["cpu_s"] = cpu.user + cpu.system
        if full:
            info = p.memory_full_info()
            row.update(uss=info.uss, pss=info.pss)
        procs.append(row)
    total = {k: sum(p.get(k, 0) for p in procs) for k in ("rss", "uss", "pss", "cpu_s")}
    roles = {
        role: {k: sum(p.get(k, 0) for p in procs if p["role"] == role) for k in ("rss", "uss", "cpu_s")}
        for role in ROLES
    }
    return {"procs": procs, "roles": roles, **total}


def restart_triggerer(stack: Any) -> None:
    if "triggerer" in stack.procs:
        stack.kill("triggerer", signal.SIGTERM)
    stack.start("triggerer")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if len(triggerer_tree(stack)) >= 2:  # the supervisor and its trigger runner subprocess
            break
        time.sleep(1)
    time.sleep(15)  # past start-up (imports, first loops)


def wait_until(predicate: Any, timeout: float, what: str, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def measure(stack: Any, platform: Any, side: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One (side, N) with a fresh triggerer: baseline, steady window, ready → left DEFERRED."""
    poll = args.poll_interval
    platform.reset()
    restart_triggerer(stack)
    tag = os.urandom(3).hex()
    # 1. warm-up
    run_id = stack.trigger(DAG_ID, {})
    ids = [f"w{tag}-{i}" for i in range(args.warmup)]
    platform.add(ids, 0.0)
    defer(stack, run_id, side, ids, args, tag, moment=time.time())
    wait_until(lambda: still_deferred(stack, run_id) == 0, 300, "the warm-up waits")
    time.sleep(2 * poll)
    baseline = sample(stack, full=True)
    # the triggerer's own CPU with 0 triggers (its loops, DB queries, heartbeats), same window length
    idle0, i0 = sample(stack), time.monotonic()
    time.sleep(args.window_polls * poll)
    idle1, i1 = sample(stack), time.monotonic()
    idle_rate = {
        role: (idle1["roles"][role]["cpu_s"] - idle0["roles"][role]["cpu_s"]) / (i1 - i0) for role in ROLES
    }
    idle_rate["total"] = (idle1["cpu_s"] - idle0["cpu_s"]) / (i1 - i0)
    # 2. N waits, not ready
    run_id = stack.trigger(DAG_ID, {})
    ids = [f"r{tag}-{i}" for i in range(n)]
    platform.add(ids, float("inf"))
    started = time.monotonic()
    # floor, silent: every trigger fires at one moment, after loading, settling and the window
    moment = time.time() + 30 + 0.08 * n + (2 + args.window_polls) * poll
    defer(stack, run_id, side, ids, args, tag, moment=moment)
    wait_until(lambda: assigned(stack, run_id) == n, 900, f"a triggerer to take all {n}")
    # taken is not running: the supervisor then builds each trigger's workload (its DAG
    # deserialized) and the runner starts it, which writes the trigger's log file
    wait_until(lambda: triggers_started(stack, run_id) >= n, 900, f"all {n} triggers to start")
    if side not in FIRE_AT_ONCE:
        wanted = set(ids)
        wait_until(lambda: wanted <= platform.seen, 900, f"the platform to be asked about all {n}")
    if side == "ours":  # one LIST covers every pod: also wait for each trigger's first status
        wait_until(lambda: triggers_started(stack, run_id, "waiting for runner") >= n, 900, f"{n} polling")
    all_polled_s = time.monotonic() - started
    time.sleep(2 * poll)
    # 3. steady window
    up_during = uptime()
    calls0, asked0, cpu0, t0, w0 = (
        platform.calls,
        platform.ids_asked,
        sample(stack),
        time.monotonic(),
        time.time(),
    )
    rss = []
    while time.monotonic() - t0 < args.window_polls * poll:
        time.sleep(1.0)
        rss.append(sample(stack)["rss"])
    t1, cpu1, calls1, asked1, w1 = (
        time.monotonic(),
        sample(stack),
        platform.calls,
        platform.ids_asked,
        time.time(),
    )
    at_n = sample(stack, full=True)
    polls = (t1 - t0) / poll
    # 4. ready, spread over two intervals
    rng = random.Random(n)
    start = time.time() + 1.0
    fired_in_window = side in FIRE_AT_ONCE and start - 1.0 > moment
    if side in FIRE_AT_ONCE:
        ready_at = dict.fromkeys(range(n), moment)
    else:
        ready_at = {i: start + rng.uniform(0, 2 * poll) for i in range(n)}
    for i, rid in enumerate(ids):
        platform.add([rid], ready_at[i])
    wait_until(lambda: still_deferred(stack, run_id) == 0, 600, "every wait to leave DEFERRED", every=2.0)
    left = left_deferred_at(stack, run_id)
    # kubernetes: from when the pod's patch to Running was answered (bench_http: the planned instant)
    ready_at = {i: platform.flipped.get(rid, ready_at[i]) for i, rid in enumerate(ids)}
    latency = [left[i][1] - ready_at[i] for i in range(n) if i in left]
    # split at the first status call that answered "ready": detection (the poll), then handover
    # (the trigger's event → the supervisor's submit_event); floor and silent poll nothing
    first = {i: platform.first_ready[rid] for i, rid in enumerate(ids) if rid in platform.first_ready}
    detection = [first[i] - ready_at[i] for i in range(n) if i in first]
    handover = [left[i][1] - first[i] for i in range(n) if i in left and i in first]
    rss_n = statistics.median(rss)
    result = {
        "side": side,
        "n": n,
        "all_polled_s": round(all_polled_s, 1),
        "baseline": baseline,
        "at_n": at_n,
        "rss_window_median": rss_n,
        "rss_per_waiter_kib": (rss_n - baseline["rss"]) / n / 1024,
        "uss_per_waiter_kib": (at_n["uss"] - baseline["uss"]) / n / 1024,
        "pss_per_waiter_kib": (at_n["pss"] - baseline["pss"]) / n / 1024,
        "split_per_waiter": {
            role: {
                "rss_kib": (at_n["roles"][role]["rss"] - baseline["roles"][role]["rss"]) / n / 1024,
                "uss_kib": (at_n["roles"][role]["uss"] - baseline["roles"][role]["uss"]) / n / 1024,
                "cpu_ms_per_poll": (cpu1["roles"][role]["cpu_s"] - cpu0["roles"][role]["cpu_s"])
                * 1000
                / (n * polls),
                "net_cpu_ms_per_poll": (
                    cpu1["roles"][role]["cpu_s"] - cpu0["roles"][role]["cpu_s"] - idle_rate[role] * (t1 - t0)
                )
                * 1000
                / (n * polls),
            }
            for role in ROLES
        },
        "idle_cpu_s_per_s": idle_rate,
        "net_cpu_ms_per_waiter_poll": (cpu1["cpu_s"] - cpu0["cpu_s"] - idle_rate["total"] * (t1 - t0))
        * 1000
        / (n * polls),
        "window_s": t1 - t0,
        "polls_in_window": polls,
        "cpu_window_s": cpu1["cpu_s"] - cpu0["cpu_s"],
        "cpu_ms_per_waiter_poll": (cpu1["cpu_s"] - cpu0["cpu_s"]) * 1000 / (n * polls),
        "status_calls_per_poll": (calls1 - calls0) / polls,
        "full_gcs": full_collections(args.gc_log_dir, cpu1["procs"], w0, w1),
        "ids_per_poll": (asked1 - asked0) / polls,
        "floor_fired_in_window": fired_in_window,
        "resumed": len(left),
        "states_after": sorted({s for s, _ in left.values()}),
        "latency": summarize(latency),
        "detection": summarize(detection) if detection else None,
        "handover": summarize(handover) if handover else None,
        "uptime_during": up_during,
    }
    print(
        f"  {side} N={n}: {result['rss_per_waiter_kib']:.1f} KiB/waiter, "
        f"{result['cpu_ms_per_waiter_poll']:.3f} ms CPU/waiter/poll (net {result['net_cpu_ms_per_waiter_poll']:.3f}), "
        f"{result['status_calls_per_poll']:.1f} calls/poll, ready→left DEFERRED median "
        f"{result['latency']['median']:.2f}s p90 {result['latency']['p90']:.2f}s"
        + "".join(
            f"; {part} median {result[part]['median']:.2f}s p90 {result[part]['p90']:.2f}s"
            for part in ("detection", "handover")
            if result[part]
        ),
        file=sys.stderr,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--sides", nargs="+", choices=sorted(SIDES), default=list(SIDES))
    parser.add_argument("--poll-interval", type=float, default=5.0, help="seconds, both sides")
    parser.add_argument("--window-polls", type=int, default=24, help="poll intervals in the steady window")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up waits before the baseline")
    parser.add_argument("--out", default="triggerer_real", help="results/<out>.json")
    parser.add_argument(
        "--backend",
        choices=("bench_http", "kubernetes"),
        default="bench_http",
        help="kubernetes: pods in the API server emulator, readiness by LIST + WATCH (_triggerer_kube.py)",
    )
    args = parser.parse_args(argv)
    if args.backend == "kubernetes" and "peer" in args.sides:
        parser.error("--backend kubernetes: the peer is KubernetesPodTrigger, measured by k8s_api_calls.py")

    from tests.support.deployment import deployment  # sets nothing up at import

    gc_logs = tempfile.TemporaryDirectory(prefix="runners-trigbench-gc-")
    args.gc_log_dir = Path(gc_logs.name)

    if args.backend == "kubernetes":
        from _triggerer_kube import KubePlatform

        platform: Any = KubePlatform()
    else:
        platform = Platform()
    conn = platform.connection(args.poll_interval)
    extra_env = {
        f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(conn),
        "PYTHONPATH": os.pathsep.join([str(REPO / "benchmarks"), str(REPO)]),
        "AIRFLOW__TRIGGERER__CAPACITY": str(max(args.n) + 100),
        "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "500",
        "RUNNERS_BENCH_GC_LOG": gc_logs.name,  # benchmarks/sitecustomize.py
    }
    result: dict[str, Any] = {
        "poll_interval": args.poll_interval,
        "backend": args.backend,
        "window_polls": args.window_polls,
        "warmup": args.warmup,
        "sides": {s: SIDES[s] for s in args.sides},
        "machine": machine(),
        "git": git_state(),
        "rows": [],
    }
    with deployment(
        executor="LocalExecutor",
        parallelism=2,
        dag_files=(DAG_FILE,),
        extra_env=extra_env,
        prefix="runners-trigbench-",
        database_prefix="runners_trigbench_",
    ) as stack:
        stack.wait_for_dag(DAG_ID, timeout=300)
        result["uptime_before"] = uptime()
        for k, n in enumerate(args.n):
            sides = args.sides if k % 2 == 0 else list(reversed(args.sides))
            for side in sides:
                print(f"{side}: N={n}", file=sys.stderr)
                result["rows"].append(measure(stack, platform, side, n, args))
                write_json(args.out, result)
        result["uptime_after"] = uptime()
    platform.stop()
    gc_logs.cleanup()
    path = write_json(args.out, result)
    print(report(result))
    print(f"\nrows: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
