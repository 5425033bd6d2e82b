"""How figures read: one form for each, the same in emails, pages and history reasons."""

from datetime import UTC, date, datetime, timedelta

import pytest

from improve.formatting import (
    duration,
    label,
    money,
    months,
    payback_months,
    quantity,
    since,
    when,
)
from models import Status


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1234, "£1,234"),
        (1234.0, "£1,234"),
        (8000.5, "£8,000"),  # from £100 up, pence are noise
        (1250.75, "£1,251"),
        (12.5, "£12.50"),
        (12.001, "£12"),
        (99.999, "£100"),
        (0, "£0"),
        ("1800.0", "£1,800"),  # as a JSON email context may carry it
        (None, "—"),
    ],
)
def test_money(value: object, expected: str) -> None:
    assert money(value) == expected


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (1234.5, "kWh", "1,234 kWh"),
        (1312.4, "", "1,312"),
        (12.5, "kg", "12.5 kg"),
        (12.34, "kg", "12.3 kg"),
        (3.0, "sheets", "3 sheets"),
        (None, "kg", "—"),
    ],
)
def test_quantity(value: object, unit: str, expected: str) -> None:
    assert quantity(value, unit) == expected


def test_label() -> None:
    assert label(Status.awaiting_approval) == "Awaiting approval"
    assert label("customer_update") == "Customer update"
    assert label("kg_co2e") == "Kg co2e"  # only the first letter changes
    assert label("") == ""


def test_when() -> None:
    assert when(date(2026, 11, 30)) == "30 November 2026"
    assert when("2026-11-30") == "30 November 2026"
    assert when(datetime(2026, 3, 2, 14, 5, tzinfo=UTC)) == "2 March 2026 14:05 UTC"
    assert when(None) == "—"
    assert when("soon") == "soon"


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=30), "less than a minute"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(minutes=59, seconds=59), "59 minutes"),
        (timedelta(hours=23, minutes=59), "23 hours"),
        (timedelta(days=1), "1 day"),
        (timedelta(hours=121), "5 days"),
        (timedelta(days=4, hours=23), "4 days"),  # whole days waited, never rounded up
        (timedelta(seconds=-5), "less than a minute"),
    ],
)
def test_duration(delta: timedelta, expected: str) -> None:
    assert duration(delta) == expected


def test_since() -> None:
    assert since(datetime.now(UTC) - timedelta(days=3, hours=2)) == "3 days"
    assert since(None) == "—"


def test_payback() -> None:
    assert payback_months(2000, 4800) == 5
    assert payback_months(0, 4800) is None
    assert payback_months(2000, None) is None
    assert months(0.4) == "less than a month"
    assert months(1) == "about 1 month"
    assert months(2500 / (1800 / 12)) == "about 17 months"
    assert months(30) == "about 2 years and 6 months"
    assert months(60) == "about 5 years"
    assert months(None) == "—"
