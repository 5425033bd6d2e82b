"""The fault suite, small: 10 improvements while each part of `improve up` is killed once."""

import sys
from pathlib import Path

import pytest

from tests.faults.run import Plan, run

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]


def test_nothing_is_lost_when_each_part_is_killed_once_and_smtp_is_down(tmp_path: Path) -> None:
    result = run(
        Plan(improvements=10, seed=7, kills=1, outage=20.0, window=40.0, settle_deadline=300.0),
        tmp_path,
    )

    assert (
        result.right,
        result.decisions_lost,
        result.results_lost,
        result.delivered_twice,
        result.never_delivered,
        result.history_gaps,
    ) == (10, 0, 0, 0, 0, 0), "\n".join(result.notes)
