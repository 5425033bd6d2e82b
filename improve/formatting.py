"""How amounts, quantities, dates and durations read to a person."""

import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

# What a missing figure reads as: a dash, never "None" or "0".
NOTHING = "—"


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def money(value: Any) -> str:
    """£1,234 for whole pounds and for anything from £100 up; £12.50 below that; "—" for nothing.

    Pence only matter on small sums: "£8,000.50" is noise to someone deciding, "£2.50" is not.
    """
    if value is None:
        return NOTHING
    n = _number(value)
    if n is None:
        return str(value)
    if abs(n) >= 100 or n.is_integer():
        return f"£{n:,.0f}"
    return f"£{n:,.2f}".removesuffix(".00")  # 12.001 is £12, not £12.00


def quantity(value: Any, unit: str = "") -> str:
    """1,234 kWh, 12.5 kg, 3 sheets: whole from 100 up, one decimal below; "—" for nothing."""
    if value is None:
        return NOTHING
    n = _number(value)
    if n is None:
        text = str(value)
    elif abs(n) >= 100:
        text = f"{n:,.0f}"
    else:
        text = f"{n:,.1f}".removesuffix(".0")
    return f"{text} {unit}".strip()


def label(value: Any) -> str:
    """awaiting_approval → "Awaiting approval": an enum value or a field name as a heading."""
    text = str(getattr(value, "value", value)).replace("_", " ")
    return text[:1].upper() + text[1:]


def when(value: Any) -> str:
    """30 November 2026 for a day, 30 November 2026 14:05 UTC for a moment; "—" for nothing.

    Also takes the ISO text a JSON email context carries ("2026-11-30").
    """
    if value is None:
        return NOTHING
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        return f"{moment.day} {moment:%B %Y %H:%M} UTC"
    if isinstance(value, date):
        return f"{value.day} {value:%B %Y}"
    return str(value)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def duration(delta: timedelta) -> str:
    """'3 days', '5 hours', '12 minutes': how long, in whole units of the largest that fits."""
    seconds = max(delta.total_seconds(), 0)
    if seconds < 60:
        return "less than a minute"
    if seconds < 3600:
        return _plural(int(seconds // 60), "minute")
    if seconds < 86400:
        return _plural(int(seconds // 3600), "hour")
    return _plural(int(seconds // 86400), "day")


def since(moment: datetime | None) -> str:
    """How long ago, e.g. '3 days'; "—" for nothing."""
    return NOTHING if moment is None else duration(datetime.now(UTC) - moment)


def payback_months(cost: Any, annual_saving: Any) -> float | None:
    """Months until the saving has paid for the cost, when both are known and positive."""
    cost_n, saving_n = _number(cost), _number(annual_saving)
    if not cost_n or not saving_n or cost_n <= 0 or saving_n <= 0:
        return None
    months = cost_n / (saving_n / 12)
    return months if math.isfinite(months) else None


def months(value: float | None) -> str:
    """A payback in words: 'less than a month', 'about 5 months', 'about 2 years and 3 months'."""
    if value is None:
        return NOTHING
    if value < 1:
        return "less than a month"
    whole = round(value)
    if whole < 24:
        return f"about {_plural(whole, 'month')}"
    years, rest = divmod(whole, 12)
    return f"about {_plural(years, 'year')}" + (f" and {_plural(rest, 'month')}" if rest else "")


# The same names in the email templates and the page templates, so a figure reads alike in both.
FILTERS: dict[str, Callable[..., str]] = {
    "money": money,
    "quantity": quantity,
    "label": label,
    "when": when,
    "duration": duration,
    "since": since,
    "months": months,
}
