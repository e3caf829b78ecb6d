"""Bench spec options are checked when the DAG is parsed; the local HIL command runner."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from airflow_provider_runners.backends.shared.bench import run_bench_command
from airflow_provider_runners.core.backend import CommandRequest
from airflow_provider_runners.core.bench_options import parse_bench_options, selector_for
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import RunnerSpecError
from airflow_provider_runners.operators.provision import ProvisionRunnerOperator

BASE = {"runner_class": "bench", "profile": "any", "tags": {"tenant": "hil"}}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "spec.options: a bench runner needs 'place' (or 'bench_id') or 'tags'"),
        (
            {"tags": {"Board": "imx8"}},
            "spec.options: tags: key 'Board' is not allowed; allowed: [a-z][a-z0-9_]+",
        ),
        ({"tags": {"board": "imx 8"}}, "spec.options: tags.board: 'imx 8' is not a tag value"),
        ({"tags": {"name": "x"}}, "key 'name' is not allowed"),
        ({"place": "a/b"}, "spec.options: place: 'a/b' is not a bench name"),
        ({"place": "a", "bench_id": "b"}, "bench_id: 'b' differs from place 'a'"),
        (
            {"tags": {"board": "x"}, "readiness": "maybe"},
            "readiness: 'maybe' is not allowed; allowed: ['auto'",
        ),
        ({"tags": {"board": "x"}, "readiness": "health"}, "readiness: 'health' needs health_command"),
        ({"tags": {"board": "x"}, "queue": "no"}, "queue: 'no' must be true or false"),
        ({"tags": {"board": "x"}, "priority": 1000}, "priority: 1000 must be a number from -100 to 100"),
        ({"tags": {"board": "x"}, "boards": 1}, "['boards'] not supported for bench runners"),
    ],
)
def test_bad_bench_options_fail_at_parse_time_naming_field_and_allowed(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(RunnerSpecError) as err:
        ProvisionRunnerOperator(task_id="p", spec={**BASE, "options": options})
    assert message in str(err.value)


def test_good_options_and_profile_defaults() -> None:
    spec = RunnerSpec.parse({**BASE, "options": {"tags": {"board": "imx8"}, "place": "imx8-a"}})
    selector = parse_bench_options(spec.options)
    assert selector.place == "imx8-a"
    assert dict(selector.tags) == {"board": "imx8"}
    assert selector.describe() == "name=imx8-a board=imx8"
    merged = selector_for({"tags": {"lab": "muc"}}, {"tags": {"board": "imx8"}, "readiness": "none"})
    assert dict(merged.tags) == {"board": "imx8", "lab": "muc"}
    assert merged.readiness == "none"
    # Options of other runner classes are not bench options.
    assert (
        RunnerSpec.parse({**BASE, "runner_class": "dask_cluster", "profile": "small", "options": {}}).options
        == {}
    )


def test_local_command_streams_and_times_out_killing_the_group() -> None:
    lines: list[str] = []
    ok = run_bench_command(
        CommandRequest(command="echo one; echo two >&2; exit 5", name="c"),
        lines.append,
        threading.Event(),
        {"PATH": "/usr/bin:/bin"},
    )
    assert ok.exit_code == 5
    assert lines == ["one", "two"]
    started = time.monotonic()
    slow = run_bench_command(
        CommandRequest(command="sh -c 'sleep 30' & sleep 30", name="c", timeout=0.5),
        lines.append,
        threading.Event(),
        {"PATH": "/usr/bin:/bin"},
        kill_grace=1,
    )
    assert slow.timed_out
    assert slow.exit_code is None
    assert time.monotonic() - started < 5
