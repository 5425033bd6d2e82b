"""The public suggestion form and the link that confirms a suggestion (no sign-in).

The form carries a honeypot field a person never sees and a signed timestamp: a bot that fills
the first or sends the form at once is answered as a person would be, and nothing is stored.
The confirmation link follows the rules of every emailed link: GET shows a button and changes
nothing (mail scanners open links), the POST from that page confirms. Committed, then announced.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from itsdangerous import BadSignature, TimestampSigner
from pydantic import BaseModel, Field
from sqlmodel import Session
from starlette.background import BackgroundTask
from starlette.responses import HTMLResponse

from improve import events
from improve.errors import InvalidInput
from improve.settings import settings
from models import Channel, SuggestionStatus
from models.db import get_engine
from tasks.outbox import send_due
from tasks.suggestions import (
    CATEGORIES,
    check_confirm_link,
    confirm,
    confirmation_email_id,
    list_suggestions,
    receive,
)
from web.api import ERRORS, EVERY_ROUTE, ApiRoute
from web.auth import Staff, may_see_contacts
from web.forms import Id
from web.limits import check_guesses, client_of
from web.render import page

router = APIRouter(include_in_schema=False)
# The confirmation link's token is the permission, so refused ones count as guesses.
link_router = APIRouter(include_in_schema=False, dependencies=[Depends(check_guesses)])

HONEYPOT = "website"  # a name a form-filling bot cannot resist; people never see the field
STAMP = "shown"
CATEGORY_NAMES = {
    "process": "How we do things",
    "waste": "Waste and recycling",
    "energy": "Energy and carbon",
    "resource": "Paper, travel, water and packaging",
}
FIELDS = ("name", "email", "title", "description", "category")


def _signer() -> TimestampSigner:
    return TimestampSigner(settings.secret_key.get_secret_value(), salt="improve:suggest-form")


def _stamp() -> str:
    return _signer().sign(b"suggest").decode()


def form_age_seconds(stamp: str, now: datetime | None = None) -> float | None:
    """How long ago the form was shown, or None when its timestamp is missing or forged."""
    try:
        _, shown = _signer().unsign(stamp, return_timestamp=True)
    except BadSignature:
        return None
    return ((now or datetime.now(UTC)) - shown).total_seconds()


def _form(
    request: Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    stamp: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context: dict[str, Any] = {
        "values": {name: "" for name in FIELDS} | (values or {}),
        "errors": errors or {},
        "categories": [(c.value, CATEGORY_NAMES[c.value]) for c in CATEGORIES],
        "stamp": stamp or _stamp(),
        "honeypot": HONEYPOT,
        "stamp_name": STAMP,
        "days": settings.suggestion_link_expiry_days,
    }
    return page(request, "suggest.html", context, status_code=status_code, private=True)


@router.api_route("/suggest", methods=["GET", "HEAD"])
def suggest_form(request: Request) -> HTMLResponse:
    """The form: name, email, what could be better, and what it is about."""
    return _form(request)


@router.post("/suggest")
async def send_suggestion(request: Request) -> HTMLResponse:
    """Take in a suggestion; the answer is "check your email" whether or not a bot sent it."""
    form = await request.form()
    values = {name: str(form.get(name) or "") for name in FIELDS}
    stamp = str(form.get(STAMP) or "")
    age = form_age_seconds(stamp)
    with Session(get_engine()) as session:
        try:
            suggestion = receive(
                session=session,
                name=values["name"],
                email=values["email"],
                title=values["title"],
                description=values["description"],
                category=values["category"],
                client=client_of(request),
                form_age_seconds=age,
                honeypot=str(form.get(HONEYPOT) or ""),
            )
        except InvalidInput as exc:
            session.rollback()
            # The first stamp still says when the form was first shown; a forged one is renewed.
            return _form(
                request,
                values=values,
                errors=exc.errors,
                stamp=stamp if age is not None else None,
                status_code=422,
            )
        session.commit()
        email_id = (
            confirmation_email_id(session=session, suggestion_id=suggestion.id)
            if suggestion is not None and suggestion.id is not None
            else None
        )
    response = page(
        request,
        "suggest_sent.html",
        {"email": values["email"].strip(), "days": settings.suggestion_link_expiry_days},
        private=True,
    )
    # The confirmation goes now rather than with the next sweep: the person is waiting for it.
    response.background = BackgroundTask(send_due, only=[email_id]) if email_id else None
    return response


@link_router.api_route("/suggest/confirm/{suggestion_id}/{token}", methods=["GET", "HEAD"])
def show_confirm(request: Request, suggestion_id: Id, token: str) -> HTMLResponse:
    """The suggestion with a Confirm button; changes nothing."""
    with Session(get_engine()) as session:
        suggestion = check_confirm_link(session=session, suggestion_id=suggestion_id, token=token)
        return page(request, "suggest_confirm.html", {"suggestion": suggestion}, private=True)


@link_router.post("/suggest/confirm/{suggestion_id}/{token}")
def confirm_suggestion(request: Request, suggestion_id: Id, token: str) -> HTMLResponse:
    """Confirm the address: the suggestion becomes an improvement, committed, then announced."""
    with Session(get_engine()) as session:
        suggestion = confirm(session=session, suggestion_id=suggestion_id, token=token)
        session.commit()
        improvement_id = suggestion.improvement_id
        context = {"suggestion": suggestion, "reference": f"IMP-{improvement_id}"}
    if improvement_id is not None:
        events.emit_submitted(improvement_id=improvement_id, submitter_id=None, channel=Channel.web)
    return page(request, "suggest_done.html", context, private=True)


# --- API (staff) ---------------------------------------------------------------------------------

api_router = APIRouter(
    prefix="/api",
    tags=["suggestions"],
    route_class=ApiRoute,
    responses={status: ERRORS[status] for status in EVERY_ROUTE},
)


class SuggestionOut(BaseModel):
    id: int
    status: SuggestionStatus
    title: str
    created_at: datetime
    confirmed_at: datetime | None
    improvement_id: int | None = Field(description="The improvement it became, once confirmed.")
    improvement_url: str | None
    name: str | None = Field(description="Only for operations and admins, like every contact.")
    email: str | None = Field(description="Only for operations and admins, like every contact.")


class SuggestionList(BaseModel):
    items: list[SuggestionOut]


@api_router.get("/suggestions", response_model=SuggestionList)
def list_suggestions_api(
    me: Staff,
    status: SuggestionStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SuggestionList:
    """Suggestions from the public form, newest first: unconfirmed ones wait for their sender to
    follow the emailed link; confirmed ones name the improvement they became."""
    contacts = may_see_contacts(me)
    with Session(get_engine()) as session:
        rows = list_suggestions(session=session, status=status, limit=limit)
    return SuggestionList(
        items=[
            SuggestionOut(
                id=row.id,
                status=row.status,
                title=row.title,
                created_at=row.created_at,
                confirmed_at=row.confirmed_at,
                improvement_id=row.improvement_id,
                improvement_url=f"{settings.base_url}/improvements/{row.improvement_id}"
                if row.improvement_id
                else None,
                name=row.name if contacts else None,
                email=row.email if contacts else None,
            )
            for row in rows
        ]
    )
