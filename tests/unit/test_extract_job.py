"""dags/extract_job.py: the month partitions a run extracts, on calendar edges (no wall clock)."""

from __future__ import annotations

from datetime import date

import pytest
from extract_job import previous_months  # dags/ is on sys.path (tests/conftest.py)


@pytest.mark.parametrize(
    ("end", "count", "expected"),
    [
        (date(2027, 1, 1), 2, ["2026-11", "2026-12"]),  # crosses the year
        (date(2026, 12, 31), 2, ["2026-10", "2026-11"]),  # last day of the year
        (date(2028, 3, 31), 1, ["2028-02"]),  # leap February, from a month's last day
        (date(2026, 3, 1), 3, ["2025-12", "2026-01", "2026-02"]),
        (date(2026, 5, 15), 0, []),
    ],
)
def test_previous_months_on_calendar_edges(end: date, count: int, expected: list[str]) -> None:
    assert previous_months(end, count) == expected
