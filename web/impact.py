"""The public impact report (no sign-in): the page, its chart images, and the stakeholders'
unsubscribe link (GET shows, POST acts, as every emailed link)."""

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session
from starlette.responses import HTMLResponse, Response

from improve.errors import NotFound
from models.db import get_engine, utcnow
from tasks.charts import Chart
from tasks.report import Report, impact_report
from tasks.stakeholders import check_unsubscribe, unsubscribe
from web.forms import Id
from web.limits import check_guesses
from web.render import page

router = APIRouter(include_in_schema=False)
# The unsubscribe link's token is its permission: refused ones count as guesses (web.limits).
link_router = APIRouter(include_in_schema=False, dependencies=[Depends(check_guesses)])

# Public and the same for everyone: caches may keep it a few minutes.
CACHE = {"Cache-Control": "public, max-age=300"}


def _report() -> Report:
    with Session(get_engine()) as session:
        return impact_report(session=session, until=utcnow())


def chart_url(chart: Chart) -> str:
    return f"/impact/charts/{chart.name}.png"


@router.api_route("/impact", methods=["GET", "HEAD"])
def show_impact(request: Request) -> HTMLResponse:
    """The report as of now: totals, then each view as charts with their numbers beside them."""
    report = _report()
    charts = {
        c.name: {"title": c.title, "alt": c.alt, "src": chart_url(c)} for c in report.charts()
    }
    response = page(request, "impact.html", {"report": report, "charts": charts})
    response.headers.update(CACHE)
    return response


@router.api_route("/impact/charts/{name}.png", methods=["GET", "HEAD"])
def chart_image(name: str) -> Response:
    """One of the report's charts as of now, as a PNG."""
    chart = next((c for c in _report().charts() if c.name == name), None)
    if chart is None:
        raise NotFound("chart", name)
    return Response(chart.png, media_type="image/png", headers=CACHE)


@link_router.api_route("/impact/unsubscribe/{stakeholder_id}/{token}", methods=["GET", "HEAD"])
def show_unsubscribe(request: Request, stakeholder_id: Id, token: str) -> HTMLResponse:
    """Ask to confirm; changes nothing (mail scanners open links)."""
    with Session(get_engine()) as session:
        check_unsubscribe(session=session, stakeholder_id=stakeholder_id, token=token)
    return _page(request, done=False)


@link_router.post("/impact/unsubscribe/{stakeholder_id}/{token}")
def stop_reports(request: Request, stakeholder_id: Id, token: str) -> HTMLResponse:
    """Stop the report: from the confirm page, or a mail client's RFC 8058 one-click POST."""
    with Session(get_engine()) as session:
        unsubscribe(session=session, stakeholder_id=stakeholder_id, token=token)
        session.commit()
    return _page(request, done=True)


def _page(request: Request, done: bool) -> HTMLResponse:
    return page(
        request,
        "unsubscribe.html",
        {"purpose_text": "our impact report", "done": done},
        private=True,
    )
