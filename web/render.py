"""The one template environment for pages, its filters, and the headers every page carries."""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from improve.formatting import FILTERS, payback_months
from improve.settings import settings
from tasks.estimates import MEASURE_NAMES, figure

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


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,  # every page, not only *.html: user text is always shown, never run
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    env.globals.update(
        payback_months=payback_months,
        prefect_ui_url=PREFECT_UI_URL,
        figure=figure,  # forecast beside actual (tasks/estimates.py)
        measure_names=MEASURE_NAMES,
    )
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
    values = {
        # Who is signed in (set by web.auth.staff) for the header and every form's CSRF token.
        "signed_in": getattr(request.state, "colleague", None),
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "mail_sink": not settings.production,
        **(context or {}),
    }
    return templates.TemplateResponse(
        request, name, values, status_code=status_code, headers=headers
    )
