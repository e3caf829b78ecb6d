"""The airflow-runners command line as a new user meets it: --version, help on every argument
(plain text, no RST), one-line errors for bad URLs and unreachable endpoints, demo progress."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import airflow_provider_runners
from airflow_provider_runners.cli import build_parser, explain, main

CLI = [sys.executable, "-m", "airflow_provider_runners.cli"]


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"airflow-runners {airflow_provider_runners.__version__}"


def test_every_argument_has_help_and_no_help_text_is_rst() -> None:
    parsers = _parsers(build_parser())
    assert len(parsers) >= 8
    for prog, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{prog}: {action.option_strings or action.dest} has no help"
        text = parser.format_help()
        for rst in ("``", ":class:", ":func:", ":mod:"):
            assert rst not in text, f"{prog} --help shows {rst!r}"


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("nosuch://bucket/x", "not a usable URL (Unsupported filesystem: 'nosuch')"),
        ("http://[bad", "not a usable URL (Invalid IPv6 URL)"),
    ],
)
def test_a_bad_ledger_url_is_one_line_without_a_traceback(base: str, expected: str, tmp_path: Path) -> None:
    out = subprocess.run(
        [*CLI, "evidence", "verify", "--base", base],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"airflow-runners evidence: error: evidence ledger {base}: ")
    assert expected in line
    assert "Traceback" not in out.stderr + out.stdout


def test_an_unreachable_endpoint_and_missing_credentials_read_as_one_line() -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoCredentialsError

    from tests.moto_aws import free_port

    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(Exception) as caught:
        s3.head_bucket(Bucket="evidence")
    line = explain(caught.value, "s3://evidence")
    assert line.startswith("s3://evidence: unreachable: Could not connect to the endpoint URL")
    assert "\n" not in line
    assert explain(NoCredentialsError(), "s3://evidence") == (
        "s3://evidence: no AWS credentials found; set [runners] evidence_conn_id, or AWS_PROFILE / AWS_ACCESS_KEY_ID"
    )


def test_demo_prints_progress_with_the_running_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow_provider_runners.demo import _airflow_with_progress

    log = tmp_path / "demo.log"
    log.write_text("[DAG TEST] starting task_id=old.task map_index=-1\n")  # an earlier run: not shown
    script = (
        "import sys, time\n"
        "time.sleep(0.6)\n"
        "print('INFO [DAG TEST] starting task_id=cluster.generate map_index=-1', flush=True)\n"
        "time.sleep(1.2)\n"
        "sys.exit(3)\n"
    )
    code = _airflow_with_progress([], {}, log, every=0.4, command=[sys.executable, "-c", script])
    assert code == 3
    lines: list[Any] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("    ... ")]
    assert lines[0].endswith("s, starting")
    assert lines[-1].endswith("s, running cluster.generate")
    assert not any("old.task" in line for line in lines)
