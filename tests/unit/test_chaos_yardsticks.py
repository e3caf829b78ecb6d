"""The fault suite's evidence yardstick (tests/chaos/harness.round_problems) can fail: each
broken story the issue describes is caught, a whole one passes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chaos.harness import round_problems

RUNNER = {"resource_id": "ld-x"}


def e(event: str, outcome: str, try_number: int = 1, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"event": event, "outcome": outcome, "try_number": try_number, **extra}
    if event == "provision":
        entry.setdefault("runner", RUNNER)
    return entry


def teardown(existed: bool = True) -> dict[str, Any]:
    return e("teardown", "success", facts={"teardown": [{"resource_id": "ld-x", "existed": existed}]})


def test_a_whole_story_passes() -> None:
    story = [e("provision", "success"), e("work", "up_for_retry"), e("work", "success", 2), teardown()]
    assert round_problems(story, had_runner=True, max_rounds=1) == []


def test_a_retry_that_made_a_new_runner_is_a_second_round() -> None:
    story = [e("provision", "failed", terminal=True), e("provision", "success", 2), teardown()]
    assert round_problems(story, had_runner=True, max_rounds=None) == []
    assert "2 rounds" in round_problems(story, had_runner=True, max_rounds=1)[0]


@pytest.mark.parametrize(
    ("story", "problem"),
    [
        ([e("provision", "success"), e("work", "success")], "0 terminal entries"),
        ([e("reap", "success", None)], "no provision entry"),
        ([e("provision", "success"), teardown(), e("reap", "success", None)], "2 terminal entries"),
        ([e("provision", "success"), teardown(existed=False)], "0 terminal entries"),
        ([e("provision", "success"), teardown(), e("work", "success")], "success reported after"),
        (
            [e("provision", "failed"), e("reap", "success", None), e("provision", "success")],
            "provision entry of try 1 after the runner ended",
        ),
    ],
)
def test_broken_stories_are_caught(story: list[dict[str, Any]], problem: str) -> None:
    problems = round_problems(story, had_runner=True, max_rounds=None)
    assert any(problem in p for p in problems), problems
