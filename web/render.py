"""The one template environment for pages, its filters, and the headers every page carries."""

import math
import os
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from models.db import utcnow

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "web"

# The Prefect UI of the embedded stack; PREFECT_UI_URL is Prefect's own name for the same thing.
PREFECT_UI_URL = os.environ.get("PREFECT_UI_URL", "http://127.0.0.1:4200")

# Pages never run scripts (mail HTML is shown in a sandboxed frame under the same policy) and never
# leak a token-bearing address through the Referer header.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
# Pages behind email links: not cached by proxies, not indexed.
PRIVATE_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}


def money(value: float | int | None) -> str:
    """£1,234 for whole pounds, £12.50 otherwise; an em dash for nothing."""
    if value is None:
        return "—"
    value = float(value)
    if value == int(value):
        return f"£{value:,.0f}"
    return f"£{value:,.2f}"


def amount(value: float | int | None, unit: str = "") -> str:
    """1,234 kWh, 12.5 kg: a quantity as a person would write it."""
    if value is None:
        return "—"
    value = float(value)
    text = f"{value:,.0f}" if value == int(value) or abs(value) >= 100 else f"{value:,.1f}"
    return f"{text} {unit}".strip()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def duration(delta: timedelta) -> str:
    """'3 days', '5 hours', '12 minutes': how long, to the unit that matters."""
    seconds = max(delta.total_seconds(), 0)
    if seconds < 60:
        return "less than a minute"
    if seconds < 3600:
        return _plural(int(seconds // 60), "minute")
    if seconds < 86400:
        return _plural(int(seconds // 3600), "hour")
    return _plural(int(seconds // 86400), "day")


def since(moment: datetime | None) -> str:
    """How long ago, e.g. '3 days'."""
    return "—" if moment is None else duration(utcnow() - moment)


def when(moment: datetime | date | None) -> str:
    """12 Mar 2026 14:05 UTC, or 12 Mar 2026 for a date."""
    if moment is None:
        return "—"
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%-d %b %Y %H:%M UTC")
    return moment.strftime("%-d %b %Y")


def label(value: object) -> str:
    """awaiting_approval → Awaiting approval."""
    text = str(getattr(value, "value", value)).replace("_", " ")
    return text[:1].upper() + text[1:]


def payback_months(cost: float | None, annual_saving: float | None) -> float | None:
    """Months until the saving has paid for the cost, when both are known."""
    if not cost or not annual_saving or cost <= 0 or annual_saving <= 0:
        return None
    months = cost / (annual_saving / 12)
    return months if math.isfinite(months) else None


def months(value: float) -> str:
    """Payback in words: 'about 5 months', 'less than a month', 'about 2 years and 3 months'."""
    if value < 1:
        return "less than a month"
    whole = round(value)
    if whole < 24:
        return f"about {_plural(whole, 'month')}"
    years, rest = divmod(whole, 12)
    return f"about {_plural(years, 'year')}" + (f" and {_plural(rest, 'month')}" if rest else "")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,  # every page, not only *.html: user text is always shown, never run
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=money,
        amount=amount,
        since=since,
        when=when,
        label=label,
        duration=duration,
        months=months,
    )
    env.globals.update(payback_months=payback_months, prefect_ui_url=PREFECT_UI_URL)
    return env


templates = Jinja2Templates(env=_environment())


def page(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    private: bool = False,
) -> HTMLResponse:
    """Render a page from templates/web with the security headers (and no caching if private)."""
    headers = dict(SECURITY_HEADERS)
    if private:
        headers.update(PRIVATE_HEADERS)
    return templates.TemplateResponse(
        request, name, dict(context or {}), status_code=status_code, headers=headers
    )
