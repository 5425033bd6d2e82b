"""Reading what people type: amounts, lists of emails, and validation messages they can act on."""

import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel

from improve.errors import field_name
from models.db import MAX_INT
from models.improvement import ESTIMATE_FIELDS as ESTIMATE_FIELDS  # the forms read them too

# An id in an address: a number our integer columns can hold, or the address names nothing.
Id = Annotated[int, Path(ge=1, le=MAX_INT)]

WHOLE_NUMBER_FIELDS = {"sheets_paper"}


def parse_amount(raw: str | None, field: str, errors: dict[str, str], *, whole: bool = False):
    """A non-negative number from a form field, or None when left blank.

    People type "£1,200" or " 12.5 ": the pound sign, commas and spaces are allowed.
    A problem is written to `errors[field]` and None returned.
    """
    text = (raw or "").strip().replace(",", "").replace("£", "").replace(" ", "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        errors[field] = f"“{raw}” is not a number"
        return None
    if not math.isfinite(value):
        errors[field] = f"“{raw}” is not a number"
        return None
    if value < 0:
        errors[field] = "cannot be negative"
        return None
    if whole:
        if value != int(value):
            errors[field] = "must be a whole number"
            return None
        return int(value)
    return value


def split_emails(raw: str | None) -> list[str]:
    """'a@x.org, b@y.org; c@z.org' → the three addresses (commas, semicolons or spaces)."""
    return [part for part in re.split(r"[,;\s]+", raw or "") if part]


def plain_errors(errors: Sequence[Any], *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """pydantic's error list → one plain message per field ("cannot be negative").

    `skip` drops leading location parts such as "body" so the key is the field's own name.
    """
    messages: dict[str, str] = {}
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        while loc and loc[0] in skip:
            loc.pop(0)
        messages.setdefault(field_name(loc) or "body", _message(error))
    return messages


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le'):,}"
    if kind == "greater_than_equal":
        return "cannot be negative" if ctx.get("ge") == 0 else f"must be at least {ctx.get('ge')}"
    if kind in {"float_parsing", "float_type", "int_parsing", "int_type", "finite_number"}:
        return "must be a number"
    if kind == "int_from_float":
        return "must be a whole number"
    if kind == "string_too_short":
        return f"needs at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"can be at most {ctx.get('max_length')} characters"
    if kind == "enum":
        return f"must be one of: {ctx.get('expected', '')}".replace("'", "")
    if kind == "json_invalid":
        return f"is not valid JSON: {ctx['error']}" if ctx.get("error") else "is not valid JSON"
    if kind == "value_error":
        return str(error.get("msg", "is not valid")).removeprefix("Value error, ")
    return str(error.get("msg", "is not valid"))


def parse_moment(raw: str | None, field: str, errors: dict[str, str]) -> datetime | None:
    """A date and time from a form ("2026-12-01T09:30", as datetime-local sends it), or None when
    left blank. Without a zone it is UTC, as the pages show times."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        errors[field] = f"“{raw}” is not a date and time such as 2026-12-01 09:30"
        return None


def parse_day(raw: str | None, field: str, errors: dict[str, str]) -> date | None:
    """A date from a form ("2026-12-01"), or None when left blank."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[field] = f"“{raw}” is not a date such as 2026-12-01"
        return None


# --- activity lines ("2,000 fewer letters a month"), the same rows on every form ---------------

ACTIVITY_ROWS = 3  # rows a form shows; more lines come through the API or the CLI


class ActivityRows(BaseModel):
    """The "What changes" rows of a form, exactly as typed (kept to show again on an error)."""

    activity_0: str = ""
    quantity_0: str = ""
    per_0: str = "year"
    activity_1: str = ""
    quantity_1: str = ""
    per_1: str = "year"
    activity_2: str = ""
    quantity_2: str = ""
    per_2: str = "year"


def activity_lines(
    form: ActivityRows, errors: dict[str, str]
) -> tuple[list[dict[str, str]], list[int]]:
    """The filled rows as ActivityIn's fields, and the row each came from (for row_errors).

    A row with nothing in it is skipped; a half-filled one is an error on the half that is
    missing. Quantities may be negative ("more") and carry commas: "2,000"."""
    lines: list[dict[str, str]] = []
    rows: list[int] = []
    for row in range(ACTIVITY_ROWS):
        activity = getattr(form, f"activity_{row}").strip()
        amount = getattr(form, f"quantity_{row}").strip().replace(",", "").replace(" ", "")
        if not activity and not amount:
            continue
        if not activity:
            errors[f"activity_{row}"] = "choose what changes"
        if not amount:
            errors[f"quantity_{row}"] = "say how much less (or, with a minus sign, more)"
        if activity and amount:
            lines.append(
                {"activity": activity, "quantity": amount, "per": getattr(form, f"per_{row}")}
            )
            rows.append(row)
    return lines, rows


def row_errors(errors: dict[str, str], rows: list[int]) -> dict[str, str]:
    """Errors keyed activities[n].field (the API's names) → the form's own field_row names."""
    result: dict[str, str] = {}
    for field, message in errors.items():
        found = re.fullmatch(r"activities\[(\d+)\]\.(\w+)", field)
        if found and int(found.group(1)) < len(rows):
            result[f"{found.group(2)}_{rows[int(found.group(1))]}"] = message
        else:
            result[field] = message
    return result


def activity_field_names() -> dict[str, str]:
    """How the error summary names each row's fields."""
    names = {"activity": "What changes", "quantity": "How much", "per": "Per"}
    return {
        f"{field}_{row}": f"{text}, line {row + 1}"
        for row in range(ACTIVITY_ROWS)
        for field, text in names.items()
    }
