"""Partners' and processes' footprints: the staff pages and their JSON API."""

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlmodel import Session
from starlette.responses import HTMLResponse, RedirectResponse

from improve.errors import InvalidInput
from improve.settings import settings
from models import Category, RecordKind, Status
from models.db import get_engine, session_scope, utcnow
from tasks.footprint import Linked, this_year
from tasks.partners import (
    Profile,
    check_may_change_partners,
    may_change_partners,
    partner_profile,
    partner_rows,
    process_profile,
    set_hears_policies,
)
from tasks.policies import check_partner_stop, policies_of_process
from web.api import ERRORS, EVERY_ROUTE, ApiRoute, error_response
from web.auth import Staff
from web.forms import Id
from web.limits import check_guesses
from web.render import page

router = APIRouter(include_in_schema=False)
# The stop link's token is its permission: refused ones count as guesses (web.limits).
link_router = APIRouter(include_in_schema=False, dependencies=[Depends(check_guesses)])
api_router = APIRouter(
    prefix="/api",
    tags=["partners"],
    route_class=ApiRoute,
    responses={status: ERRORS[status] for status in EVERY_ROUTE},
)

# A page shows one calendar year: this one so far, or an earlier one asked for by ?year=.
Year = Annotated[int | None, Query(ge=2000, le=2100, description="A calendar year.")]


def _year_range(year: int | None) -> tuple[datetime, datetime]:
    now = utcnow()
    if year is None or year >= now.year:
        return this_year(now)
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


# --- pages ---------------------------------------------------------------------------------------


@router.get("/partners")
def partner_list(request: Request) -> HTMLResponse:
    """Every service partner with its footprint this year and its improvements."""
    since, until = this_year(utcnow())
    with Session(get_engine()) as session:
        rows = partner_rows(session=session, since=since, until=until)
    return page(request, "partners.html", {"rows": rows, "since": since})


@router.get("/partners/{partner_id}")
def partner_page(
    request: Request, partner_id: Id, colleague: Staff, year: Year = None
) -> HTMLResponse:
    """One partner: contact, service, its footprint by kind and month, its improvements."""
    since, until = _year_range(year)
    with Session(get_engine()) as session:
        partner, profile = partner_profile(
            session=session, partner_id=partner_id, since=since, until=until
        )
    context = {
        "partner": partner,
        "profile": profile,
        "year": since.year,
        "may_change": may_change_partners(colleague),
    }
    return page(request, "partner.html", context)


@router.post("/partners/{partner_id}/policies")
def set_policy_news(
    partner_id: Id, colleague: Staff, hears: Annotated[str, Form()] = ""
) -> RedirectResponse:
    """Record what the partner told us: that they agreed to hear of policy changes, or no longer
    want to (operations only)."""
    if hears not in ("yes", "no"):
        raise InvalidInput({"hears": "say yes or no"})
    check_may_change_partners(colleague)
    with session_scope() as session:
        set_hears_policies(session=session, partner_id=partner_id, hears=hears == "yes")
    return RedirectResponse(f"/partners/{partner_id}", status_code=303)


# --- the partner's own link to stop policy notices (public: the token is the permission) ------


@link_router.api_route("/partners/{partner_id}/policies/stop/{token}", methods=["GET", "HEAD"])
def show_stop(request: Request, partner_id: Id, token: str) -> HTMLResponse:
    """Ask to confirm; changes nothing (mail scanners open links)."""
    with Session(get_engine()) as session:
        check_partner_stop(session=session, partner_id=partner_id, token=token)
    return _stop_page(request, done=False)


@link_router.post("/partners/{partner_id}/policies/stop/{token}")
def stop(request: Request, partner_id: Id, token: str) -> HTMLResponse:
    """Stop the notices: from the confirm page, or a mail client's RFC 8058 one-click POST."""
    with session_scope() as session:
        partner = check_partner_stop(session=session, partner_id=partner_id, token=token)
        assert partner.id is not None
        set_hears_policies(session=session, partner_id=partner.id, hears=False)
    return _stop_page(request, done=True)


def _stop_page(request: Request, done: bool) -> HTMLResponse:
    return page(
        request,
        "unsubscribe.html",
        {"purpose_text": "news of our policies", "done": done},
        private=True,
    )


@router.get("/processes/{process_id}")
def process_page(request: Request, process_id: Id, year: Year = None) -> HTMLResponse:
    """One service process: its policies beside its footprint by kind and month, and its
    improvements."""
    since, until = _year_range(year)
    with Session(get_engine()) as session:
        process, profile = process_profile(
            session=session, process_id=process_id, since=since, until=until
        )
        served = policies_of_process(session=session, process_id=process_id)
    context = {"process": process, "profile": profile, "year": since.year, "policies": served}
    return page(request, "process.html", context)


# --- API -----------------------------------------------------------------------------------------


class FactorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    factor: str = Field(description='Improve\'s name for it, e.g. "van_mile".')
    times: float = Field(description="How many of the factor's units one unit of the kind is.")
    kg_co2e_per_unit: float
    unit: str
    source: str = Field(description="The published document, its table and the row's ID.")
    source_row: str
    note: str = Field(description="How a derived factor is derived.")


class FootprintLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: RecordKind
    activity: str = Field(description="The activity of data/activities.csv the records are.")
    label: str
    records: int
    quantity: float
    unit: str
    kg_co2e: float | None = Field(description="null: counted, not converted; `note` says why.")
    factors: list[FactorOut]
    note: str


class MonthOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    month: date = Field(description="The month's first day.")
    kg_co2e: float


class FootprintOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    since: datetime
    until: datetime = Field(description="Up to, not including.")
    factor_set: str = Field(description="The factor set in force, e.g. uk-2025.")
    document: str
    kg_co2e: float = Field(description="The sum of the converted lines.")
    lines: list[FootprintLineOut]
    months: list[MonthOut] = Field(description="The twelve calendar months (UTC) up to `until`.")


class LinkedImprovementOut(BaseModel):
    id: int
    reference: str
    title: str
    category: Category
    status: Status
    forecast_kg_co2e: float
    actual_kg_co2e: float | None = Field(description="null: not measured yet.")
    url: str


# What the API says of a partner itself, beside what it works out.
PARTNER_FIELDS = {
    "id",
    "name",
    "email",
    "contact_name",
    "service",
    "footprint_note",
    "hears_policies",
}


class PartnerOut(BaseModel):
    id: int
    name: str
    email: str
    contact_name: str
    service: str
    footprint_note: str
    hears_policies: bool = Field(description="Agreed to hear of policy changes.")
    kg_co2e_this_year: float = Field(description="From its records since 1 January (UTC).")
    open_improvements: int
    completed_improvements: int
    url: str


class PartnerList(BaseModel):
    items: list[PartnerOut]


class PartnerDetail(BaseModel):
    id: int
    name: str
    email: str
    contact_name: str
    service: str
    footprint_note: str
    hears_policies: bool = Field(description="Agreed to hear of policy changes.")
    footprint: FootprintOut
    improvements: list[LinkedImprovementOut]
    records_url: str
    url: str


class ProcessFootprint(BaseModel):
    id: int
    name: str
    description: str
    footprint: FootprintOut
    improvements: list[LinkedImprovementOut]
    records_url: str
    url: str


def _iso_day(value: object) -> object:
    """Only a day written as ISO 8601 is a day: pydantic alone would take "0" as 1 January 1970."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a date like 2025-01-31")
    return value


Since = Annotated[
    date | None,
    BeforeValidator(_iso_day),
    Query(description="From the start of this day (UTC); default: 1 January of until's year."),
]
Until = Annotated[
    date | None,
    BeforeValidator(_iso_day),
    Query(description="To the end of this day (UTC); default: now."),
]


def _range(since: date | None, until: date | None) -> tuple[datetime, datetime]:
    """The days asked for, whole and in UTC: until left out is now; since left out is 1 January
    of until's year."""
    if since is not None and until is not None and since > until:
        raise InvalidInput({"since": f"must be on or before until ({until.isoformat()})"})
    if until is None:
        end = utcnow()
    elif until == date.max:  # its end is the last moment a datetime holds
        end = datetime.max.replace(tzinfo=UTC)
    else:
        end = datetime.combine(until + timedelta(days=1), time(), UTC)
    if since is None:
        since = date(end.year if until is None else until.year, 1, 1)
    start = datetime.combine(since, time(), UTC)
    if start >= end:  # since is after today, and until was left out
        raise InvalidInput({"since": "must be on or before today, or give until"})
    return start, end


def _linked(profile: Profile) -> list[LinkedImprovementOut]:
    return [_linked_out(item) for item in profile.improvements]


def _linked_out(item: Linked) -> LinkedImprovementOut:
    improvement = item.improvement
    assert improvement.id is not None
    return LinkedImprovementOut(
        id=improvement.id,
        reference=improvement.reference,
        title=improvement.title,
        category=improvement.category,
        status=improvement.status,
        forecast_kg_co2e=item.forecast_kg_co2e,
        actual_kg_co2e=item.actual_kg_co2e,
        url=f"{settings.base_url}/improvements/{improvement.id}",
    )


@api_router.get("/partners", response_model=PartnerList)
def list_partners() -> PartnerList:
    """Every service partner by name, with its kg CO2e this year and its improvements counted."""
    since, until = this_year(utcnow())
    with Session(get_engine()) as session:
        rows = partner_rows(session=session, since=since, until=until)
    return PartnerList(
        items=[
            PartnerOut(
                **row.partner.model_dump(include=PARTNER_FIELDS),
                kg_co2e_this_year=row.kg_co2e,
                open_improvements=row.open,
                completed_improvements=row.completed,
                url=f"{settings.base_url}/partners/{row.partner.id}",
            )
            for row in rows
        ]
    )


@api_router.get(
    "/partners/{partner_id}",
    response_model=PartnerDetail,
    responses={404: error_response("No such partner.")},
)
def read_partner(partner_id: Id, since: Since = None, until: Until = None) -> PartnerDetail:
    """One partner with its footprint over the days asked for (by kind, with each factor and
    its source, and month by month) and the improvements linked to it."""
    start, end = _range(since, until)
    with Session(get_engine()) as session:
        partner, profile = partner_profile(
            session=session, partner_id=partner_id, since=start, until=end
        )
        return PartnerDetail(
            **partner.model_dump(include=PARTNER_FIELDS),
            footprint=FootprintOut.model_validate(profile.footprint),
            improvements=_linked(profile),
            records_url=f"{settings.base_url}/records?partner={partner_id}",
            url=f"{settings.base_url}/partners/{partner_id}",
        )


@api_router.get(
    "/processes/{process_id}/footprint",
    response_model=ProcessFootprint,
    responses={404: error_response("No such service process.")},
)
def read_process_footprint(
    process_id: Id, since: Since = None, until: Until = None
) -> ProcessFootprint:
    """A service process's footprint over the days asked for, and its improvements."""
    start, end = _range(since, until)
    with Session(get_engine()) as session:
        process, profile = process_profile(
            session=session, process_id=process_id, since=start, until=end
        )
        return ProcessFootprint(
            **process.model_dump(include={"id", "name", "description"}),
            footprint=FootprintOut.model_validate(profile.footprint),
            improvements=_linked(profile),
            records_url=f"{settings.base_url}/records?process={quote(process.name)}",
            url=f"{settings.base_url}/processes/{process_id}",
        )
