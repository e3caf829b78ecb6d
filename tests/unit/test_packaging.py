"""The extras and locks promised in README "Install": each lock pins an Airflow the project
claims, the demo lock is the base install + `examples` within the full lock (so `make demo` and
`make test` share one venv) and holds no cloud SDK or test tool."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _pins(name: str) -> dict[str, str]:
    text = (REPO / "requirements" / name).read_text()
    return {n.lower().replace("_", "-"): v for n, v in re.findall(r"^([\w.-]+)==(\S+)$", text, re.MULTILINE)}


def _claimed_airflow() -> SpecifierSet:
    (airflow,) = [
        Requirement(r)
        for r in PYPROJECT["project"]["dependencies"]
        if Requirement(r).name == "apache-airflow"
    ]
    return airflow.specifier


def test_extras_match_the_users_in_the_readme() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(extras) == {"google", "amazon", "kubernetes", "labgrid", "examples", "test", "dev"}
    base = {Requirement(r).name for r in PYPROJECT["project"]["dependencies"]}
    assert base == {"apache-airflow", "pydantic", "pydantic-settings", "PyYAML", "dask"}
    (everything,) = [
        Requirement(r) for r in extras["test"] if Requirement(r).name == "airflow-provider-runners"
    ]
    assert everything.extras == {"google", "amazon", "kubernetes", "labgrid", "examples"}
    assert extras["dev"] == ["airflow-provider-runners[test]"]
    readme = (REPO / "README.md").read_text()
    for extra in extras:
        if extra != "dev":
            assert f"[{extra}]" in readme, f"README does not say who installs [{extra}]"


def test_every_lock_pins_a_claimed_airflow_and_the_lowest_is_its_floor() -> None:
    claimed = _claimed_airflow()
    floor = next(s.version for s in claimed if s.operator == ">=")
    makefile = (REPO / "Makefile").read_text()
    match = re.search(r"^AIRFLOW_LOWEST := (\S+)$", makefile, re.MULTILINE)
    assert match, "the Makefile names the lowest Airflow it tests"
    assert match.group(1) == floor, "make test-lowest-airflow must test the floor pyproject.toml claims"
    full, lowest = _pins("lock.txt")["apache-airflow"], _pins(f"airflow-{floor}.lock")["apache-airflow"]
    assert full in claimed
    assert lowest in claimed
    assert lowest.startswith(floor + "."), f"the lowest lock ({lowest}) is not the claimed floor {floor}.x"


def test_demo_lock_is_the_base_and_examples_within_the_full_lock() -> None:
    demo, full = _pins("demo.lock"), _pins("lock.txt")
    assert {k: v for k, v in demo.items() if full.get(k) != v} == {}, "demo.lock must agree with lock.txt"
    for present in ("apache-airflow", "dask", "distributed", "pydantic", "pyyaml", "pandas", "pyarrow"):
        assert present in demo
    for absent in (
        "apache-airflow-providers-google",
        "apache-airflow-providers-amazon",
        "boto3",
        "kubernetes",
        "labgrid",
        "ray",
        "pytest",
        "moto",
        "ruff",
        "mypy",
        "playwright",
    ):
        assert absent not in demo, f"{absent} is in the demo lock"


def test_classifiers_claim_only_the_tested_python() -> None:
    versions = [
        c.rsplit(" :: ", 1)[1]
        for c in PYPROJECT["project"]["classifiers"]
        if c.startswith("Programming Language :: Python :: 3.")
    ]
    assert versions == ["3.11"]
    assert "--python-version 3.11" in (REPO / "Makefile").read_text()
