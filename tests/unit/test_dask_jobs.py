"""Published Dask jobs (DaskJobOperator's re-attach) on a real distributed LocalCluster: a try
killed with SIGKILL mid-job leaves the job running, the next try takes it, the body runs once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.dask_jobs import AttachedJob, job_key, job_name, picklable, started_by_try
from tests.conftest import REPO

LINEAGE = "rl0123456789abcdef0123456789"


def counted_job(client: Any, counter: str, release: str, fail_first: bool = False) -> dict[str, Any]:
    """Runs on a Dask worker: counts its runs, prints, waits for ``release``, uses the cluster."""
    with open(counter, "a") as fh:
        fh.write("run\n")
    runs = len(Path(counter).read_text().splitlines())
    print(f"body started, run {runs}", flush=True)
    while not os.path.exists(release):
        time.sleep(0.05)
    if fail_first and runs == 1:
        raise ValueError("first run fails")
    total = client.submit(sum, [1, 2, 3], pure=False).result()
    print("body done", flush=True)
    return {"runs": runs, "total": total}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=None
    ) as local:
        yield local


@pytest.fixture
def client(cluster: Any) -> Iterator[Any]:
    from distributed import Client

    with Client(cluster.scheduler_address, set_as_default=False) as c:
        yield c
        for name in c.list_datasets():
            c.unpublish_dataset(name)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _start_try_in_subprocess(address: str, counter: Path, release: Path, try_number: int) -> Any:
    """A task try in its own process: starts (or attaches to) the job, then waits for it."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from distributed import Client
        from airflow_provider_runners.dask_jobs import AttachedJob
        from tests.unit.test_dask_jobs import counted_job
        client = Client({address!r})
        job = AttachedJob(client, {LINEAGE!r}, {try_number}, print)
        run = job.start(counted_job, [{str(counter)!r}, {str(release)!r}], {{}})
        print("STARTED", run.key, flush=True)
        job.wait()
        """
    )
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def test_names_and_keys_follow_the_lineage_not_the_try() -> None:
    name = job_name(LINEAGE)
    assert name == f"airflow-runners-job-{LINEAGE}"
    assert job_key(name, 3) == f"{name}-t3"
    assert started_by_try(job_key(name, 3)) == 3
    assert started_by_try(job_key(name, 2, attempt=1)) == 2
    assert picklable(counted_job, [1], {"a": 2}) is None
    lock = threading.Lock()
    assert "cannot pickle" in (picklable(lambda client: lock) or "")


def test_a_try_killed_mid_job_leaves_it_running_and_the_next_try_reattaches(
    client: Any, cluster: Any, tmp_path: Path
) -> None:
    counter, release = tmp_path / "runs", tmp_path / "release"
    first = _start_try_in_subprocess(cluster.scheduler_address, counter, release, try_number=1)
    try:
        _wait(lambda: _lines(counter) == 1)  # the body is running on the cluster
        assert client.list_datasets() == (job_name(LINEAGE),)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    time.sleep(1.0)  # the scheduler notices the dead client; the published job must survive it
    assert client.list_datasets() == (job_name(LINEAGE),)

    output: list[str] = []
    job = AttachedJob(client, LINEAGE, 2, output.append)
    run = job.start(counted_job, [str(counter), str(release)], {})
    assert run.reattached is True
    assert run.started_by_try == 1
    assert run.key == job_key(job_name(LINEAGE), 1)
    release.touch()
    assert job.wait() == {"runs": 1, "total": 6}
    assert _lines(counter) == 1  # the body ran exactly once over both tries
    assert output[0] == "[before this try attached] body started, run 1"
    assert output[-1] == "body done"
    assert client.list_datasets() == (job_name(LINEAGE),)  # taken, but not yet stored
    job.release()
    assert client.list_datasets() == ()  # the result was stored: unpublished


def test_a_try_that_saw_the_job_end_but_could_not_store_it_leaves_it_for_the_next_try(
    client: Any, cluster: Any, tmp_path: Path
) -> None:
    # an orphaned task process (its supervisor was killed) waits the job out, then cannot hand
    # the result to Airflow, so it never calls release(): the retry takes the finished job
    counter, release = tmp_path / "runs", tmp_path / "release"
    release.touch()
    orphan = _start_try_in_subprocess(cluster.scheduler_address, counter, release, try_number=1)
    assert orphan.wait(timeout=60) == 0
    assert _lines(counter) == 1
    assert client.list_datasets() == (job_name(LINEAGE),)
    job = AttachedJob(client, LINEAGE, 2, lambda line: None)
    run = job.start(counted_job, [str(counter), str(release)], {})
    assert (run.reattached, run.started_by_try) == (True, 1)
    assert job.wait() == {"runs": 1, "total": 6}
    assert _lines(counter) == 1  # the body ran once over both tries


def test_a_finished_job_of_a_killed_try_is_taken_without_running_again(
    client: Any, cluster: Any, tmp_path: Path
) -> None:
    counter, release = tmp_path / "runs", tmp_path / "release"
    release.touch()
    first = _start_try_in_subprocess(cluster.scheduler_address, counter, release, try_number=1)
    try:
        key = job_key(job_name(LINEAGE), 1)
        _wait(lambda: client.run_on_scheduler(_state_of, key=key) == "memory")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    job = AttachedJob(client, LINEAGE, 2, lambda line: None)
    run = job.start(counted_job, [str(counter), str(release)], {})
    assert (run.reattached, run.started_by_try) == (True, 1)
    assert job.wait() == {"runs": 1, "total": 6}
    assert _lines(counter) == 1


def test_an_errored_job_is_not_reattached_the_next_try_recomputes(
    client: Any, cluster: Any, tmp_path: Path
) -> None:
    """The job failed after its try was killed: the retry starts a new one."""
    counter, release = tmp_path / "runs", tmp_path / "release"
    from distributed import Client

    with Client(cluster.scheduler_address, set_as_default=False) as dying:
        first = AttachedJob(dying, LINEAGE, 1, lambda line: None)
        first.start(counted_job, [str(counter), str(release)], {"fail_first": True})
        _wait(lambda: _lines(counter) == 1)
    # the first try's client is gone; the job fails afterwards, while nobody is attached
    release.touch()
    key = job_key(job_name(LINEAGE), 1)
    _wait(lambda: client.run_on_scheduler(_state_of, key=key) == "erred")
    job = AttachedJob(client, LINEAGE, 2, lambda line: None)
    run = job.start(counted_job, [str(counter), str(release)], {"fail_first": True})
    assert run.reattached is False
    assert run.started_by_try == 2
    assert run.replaced == [f"{key} (erred)"]
    assert job.wait() == {"runs": 2, "total": 6}
    job.release()
    assert client.list_datasets() == ()


def test_a_job_that_fails_while_attached_fails_the_try_and_is_unpublished(
    client: Any, tmp_path: Path
) -> None:
    counter, release = tmp_path / "runs", tmp_path / "release"
    release.touch()
    job = AttachedJob(client, LINEAGE, 1, lambda line: None)
    job.start(counted_job, [str(counter), str(release)], {"fail_first": True})
    with pytest.raises(ValueError, match="first run fails"):
        job.wait()
    assert client.list_datasets() == ()
    retry = AttachedJob(client, LINEAGE, 2, lambda line: None)
    assert retry.start(counted_job, [str(counter), str(release)], {"fail_first": True}).reattached is False
    assert retry.wait() == {"runs": 2, "total": 6}


def test_abandon_with_cancel_ends_the_job_without_cancel_keeps_it(client: Any, tmp_path: Path) -> None:
    counter, release = tmp_path / "runs", tmp_path / "release"
    job = AttachedJob(client, LINEAGE, 1, lambda line: None)
    job.start(counted_job, [str(counter), str(release)], {})
    _wait(lambda: _lines(counter) == 1)
    job.abandon(cancel=False)  # the task process is being killed
    assert client.list_datasets() == (job_name(LINEAGE),)
    job.abandon(cancel=True)  # this try failed on its own (timeout)
    assert client.list_datasets() == ()
    release.touch()


def _state_of(key: str, dask_scheduler: Any = None) -> str | None:
    task = dask_scheduler.tasks.get(key)
    return None if task is None else str(task.state)


def chatty_job(client: Any, lines: int) -> int:
    """Runs on a Dask worker: prints ``lines`` lines and returns at once."""
    for i in range(lines):
        print(f"line {i}", flush=True)
    return lines


def test_every_line_arrives_and_the_drivers_end_mark_ends_the_wait(client: Any) -> None:
    """The wait ends on the driver's end mark, not after a quiet period: the last lines printed
    just before the job returned are all in the output."""
    written: list[str] = []
    # a lineage of its own: a job an earlier test left running prints under LINEAGE's keys
    job = AttachedJob(client, "rl0123456789abcdef0123chatty", 1, written.append)
    run = job.start(chatty_job, [300], {})
    assert job.wait() == 300
    assert written == [f"line {i}" for i in range(300)]
    assert run.key in job._ended
    started = time.monotonic()
    job._settle(quiet=30, limit=30)  # already ended: no quiet period to wait out
    assert time.monotonic() - started < 5
    job.release()
