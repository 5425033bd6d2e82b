"""Initiatives: the staff pages (the list, one initiative with who took part, inviting) and their
JSON API. The answers come through the public invitation link (web/invitations.py)."""

import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, Response
from pydantic import BaseModel, Field, field_validator
from sqlmodel import Session, col, select
from starlette.responses import HTMLResponse, RedirectResponse

from improve.errors import InvalidInput, NotFound
from models import Colleague, Improvement, Initiative, Invitation, InvitationStatus, Partner
from models.db import MAX_INT, get_engine, session_scope, utcnow
from models.improvement import NO_NUL_PATTERN, TITLE_PATTERN
from tasks.participation import (
    MAX_DESCRIPTION,
    MAX_NOTE,
    MAX_TITLE,
    Invited,
    Tally,
    check_may_invite,
    contacts_by_email,
    create_initiative,
    find_owner,
    get_initiative,
    initiative_url,
    invitation_rows,
    invite,
    invite_again,
    may_invite,
    participation,
)
from web.api import ERRORS, EVERY_ROUTE, ApiRoute, error_response
from web.auth import Staff, may_see_contacts
from web.forms import Id, split_emails
from web.render import page

router = APIRouter(include_in_schema=False)
api_router = APIRouter(
    prefix="/api",
    tags=["initiatives"],
    route_class=ApiRoute,
    responses={status: ERRORS[status] for status in EVERY_ROUTE},
)
NOT_FOUND = error_response("No such initiative.")
FIELD_NAMES = {
    "title": "Title",
    "description": "Description",
    "improvement_id": "Improvement",
    "owner_email": "Owner",
    "customer_emails": "Customers' emails",
    "partner_emails": "Partners",
    "partner_ids": "Partners",
}


def _improvement_id(raw: str, errors: dict[str, str]) -> int | None:
    """ "IMP-12" or "12" from the form; blank is none."""
    text = raw.strip().upper().removeprefix("IMP-")
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_INT:
        errors["improvement_id"] = f"“{raw.strip()}” is not an improvement reference like IMP-12"
        return None
    return int(text)


def _start(
    session: Session,
    by: Colleague,
    *,
    title: str,
    description: str,
    improvement_id: int | None,
    owner_email: str | None,
) -> Initiative:
    """An initiative owned by `owner_email`, or by whoever starts it: the web form, the API."""
    owner = find_owner(session=session, email=owner_email) if owner_email else by
    assert owner.id is not None
    return create_initiative(
        session=session,
        title=title,
        description=description,
        improvement_id=improvement_id,
        owner_id=owner.id,
    )


# --- pages ---------------------------------------------------------------------------------------


def _list_page(
    request: Request, values: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> HTMLResponse:
    with Session(get_engine()) as session:
        initiatives = session.exec(select(Initiative).order_by(col(Initiative.id).desc())).all()
        tallies = {i.id: participation(session=session, initiative_id=i.id) for i in initiatives}
    context = {
        "initiatives": initiatives,
        "tallies": tallies,
        "values": values
        or dict.fromkeys(("title", "description", "improvement", "owner_email"), ""),
        "errors": errors or {},
        "field_names": FIELD_NAMES,
    }
    return page(request, "initiatives.html", context, status_code=422 if errors else 200)


@router.get("/initiatives")
def initiative_list(request: Request) -> HTMLResponse:
    """Every initiative, newest first, with how many were invited and answered; a form to start."""
    return _list_page(request)


@router.post("/initiatives")
def start_from_form(
    request: Request,
    colleague: Staff,
    title: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    improvement: Annotated[str, Form()] = "",
    owner_email: Annotated[str, Form()] = "",
) -> Response:
    """Start an initiative (owned by you unless you name someone) and go to its page."""
    values = {
        "title": title,
        "description": description,
        "improvement": improvement,
        "owner_email": owner_email,
    }
    errors: dict[str, str] = {}
    improvement_id = _improvement_id(improvement, errors)
    try:
        if errors:
            raise InvalidInput(errors)
        with session_scope() as session:
            initiative = _start(
                session, colleague, title=title, description=description,
                improvement_id=improvement_id, owner_email=owner_email.strip() or None,
            )  # fmt: skip
            initiative_id = initiative.id
    except InvalidInput as exc:
        return _list_page(request, values, {**errors, **exc.errors})
    return RedirectResponse(f"/initiatives/{initiative_id}", status_code=303)


def _detail_page(
    request: Request,
    colleague: Colleague,
    initiative_id: int,
    *,
    done: dict[str, int] | None = None,
    again: bool = False,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    with Session(get_engine()) as session:
        initiative = get_initiative(session=session, initiative_id=initiative_id)
        rows = invitation_rows(session=session, initiative_id=initiative_id)
        invited_partners = {r.invitation.partner_id for r in rows}
        context = {
            "initiative": initiative,
            "owner": session.get(Colleague, initiative.owner_id) if initiative.owner_id else None,
            "improvement": session.get(Improvement, initiative.improvement_id)
            if initiative.improvement_id
            else None,
            "took_part": participation(session=session, initiative_id=initiative_id),
            "rows": rows,
            "may_invite": may_invite(colleague, initiative),
            "now": utcnow(),
            "see_contacts": may_see_contacts(colleague),
            "partners": [
                p
                for p in session.exec(select(Partner).order_by(col(Partner.name))).all()
                if p.id not in invited_partners
            ],
            "done": done,
            "again": again,
            "values": values or {"customer_emails": "", "partner_ids": []},
            "errors": errors or {},
            "field_names": FIELD_NAMES,
        }
    return page(request, "initiative.html", context, status_code=422 if errors else 200)


@router.get("/initiatives/{initiative_id}")
def initiative_page(
    request: Request,
    initiative_id: Id,
    colleague: Staff,
    invited: int | None = None,
    already_invited: int = 0,
    not_consented: int = 0,
    again: int = 0,
) -> HTMLResponse:
    """One initiative: what it is, who was invited and what they said; forms to invite more."""
    done = (
        None
        if invited is None
        else {
            "invited": invited,
            "already_invited": already_invited,
            "not_consented": not_consented,
        }
    )
    return _detail_page(request, colleague, initiative_id, done=done, again=bool(again))


@router.post("/initiatives/{initiative_id}/invitations")
def invite_from_form(
    request: Request,
    initiative_id: Id,
    colleague: Staff,
    customer_emails: Annotated[str, Form()] = "",
    partner_ids: Annotated[list[str], Form()] = [],  # noqa: B006  (FastAPI reads it, never changes it)
) -> Response:
    """Invite the customers listed by email and the partners ticked; back to the page, counted."""
    values = {"customer_emails": customer_emails, "partner_ids": partner_ids}
    try:
        with session_scope() as session:
            initiative = get_initiative(session=session, initiative_id=initiative_id)
            check_may_invite(colleague, initiative)
            customers, _ = contacts_by_email(
                session=session, customer_emails=split_emails(customer_emails)
            )
            partners = [int(p) for p in partner_ids if p.isdigit() and len(p) < 12]
            if len(partners) != len(partner_ids):
                raise InvalidInput({"partner_ids": "choose partners from the list"})
            if not customers and not partners:
                raise InvalidInput(
                    {"customer_emails": "list customers' emails or tick partners to invite"}
                )
            done = invite(
                session=session,
                initiative_id=initiative_id,
                customer_ids=customers,
                partner_ids=partners,
            )
    except InvalidInput as exc:
        return _detail_page(request, colleague, initiative_id, values=values, errors=exc.errors)
    return RedirectResponse(
        f"/initiatives/{initiative_id}?{urlencode(done.as_dict())}", status_code=303
    )


@router.post("/initiatives/{initiative_id}/invitations/{invitation_id}/again")
def invite_again_from_form(initiative_id: Id, invitation_id: Id, colleague: Staff) -> Response:
    """Invite again someone whose link expired unanswered; back to the page."""
    _invite_again(initiative_id, invitation_id, colleague)
    return RedirectResponse(f"/initiatives/{initiative_id}?again=1", status_code=303)


def _invite_again(initiative_id: int, invitation_id: int, colleague: Colleague) -> None:
    with session_scope() as session:
        initiative = get_initiative(session=session, initiative_id=initiative_id)
        check_may_invite(colleague, initiative)
        invitation = session.get(Invitation, invitation_id)
        if invitation is None or invitation.initiative_id != initiative_id:
            raise NotFound("invitation", invitation_id)
        invite_again(session=session, invitation_id=invitation_id)


# --- API -----------------------------------------------------------------------------------------


class TallyOut(BaseModel):
    invited: int = Field(description="Every invitation, answered or not.")
    accepted: int
    declined: int
    waiting: int = Field(description="No answer yet.")


def _tally(tally: Tally) -> TallyOut:
    return TallyOut(**tally.as_dict())


class InitiativeOut(BaseModel):
    id: int
    title: str
    description: str
    improvement_id: int | None
    owner_email: str | None
    created_at: datetime
    participation: TallyOut = Field(description="Customers and partners together.")
    customers: TallyOut
    partners: TallyOut
    url: str = Field(description="The initiative's page in the web app.")


class InitiativeList(BaseModel):
    items: list[InitiativeOut]


class InvitationOut(BaseModel):
    id: int
    kind: str = Field(description="customer or partner.")
    customer_id: int | None
    partner_id: int | None
    name: str
    status: InvitationStatus
    invited_at: datetime
    expires_at: datetime | None = Field(description="When the link stops working.")
    answered_at: datetime | None
    note: str = Field(max_length=MAX_NOTE, description="What they wrote with their answer.")


class InitiativeDetail(InitiativeOut):
    invitations: list[InvitationOut] = Field(description="Oldest first.")


class InitiativeCreate(BaseModel):
    title: str = Field(max_length=MAX_TITLE, json_schema_extra={"pattern": TITLE_PATTERN})
    description: str = Field(
        "", max_length=MAX_DESCRIPTION, json_schema_extra={"pattern": NO_NUL_PATTERN}
    )
    improvement_id: int | None = Field(
        None, ge=1, le=MAX_INT, description="The improvement it serves, if any."
    )
    owner_email: str | None = Field(
        None,
        max_length=254,
        json_schema_extra={"pattern": NO_NUL_PATTERN},
        description="Who hears every answer; you, if left out or blank.",
    )

    @field_validator("title", "description", "owner_email")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain a NUL character")
        return value

    @field_validator("title")
    @classmethod
    def _title_has_words(cls, value: str) -> str:
        if not re.fullmatch(TITLE_PATTERN, value):
            raise ValueError("title needs at least 2 characters that are not spaces")
        return value


class InvitationsCreate(BaseModel):
    customer_emails: list[
        Annotated[str, Field(max_length=254, json_schema_extra={"pattern": NO_NUL_PATTERN})]
    ] = Field(
        default_factory=list,
        max_length=10_000,
        description="Customers to invite: those who have not agreed to invitations are counted, "
        "not invited.",
    )
    partner_emails: list[
        Annotated[str, Field(max_length=254, json_schema_extra={"pattern": NO_NUL_PATTERN})]
    ] = Field(default_factory=list, max_length=1_000, description="Partners to invite.")

    @field_validator("customer_emails", "partner_emails")
    @classmethod
    def _no_nul(cls, value: list[str]) -> list[str]:
        if any("\x00" in email for email in value):
            raise ValueError("must not contain a NUL character")
        return value


class InvitedOut(BaseModel):
    invited: int = Field(description="Invited now: each gets one email with their own link.")
    already_invited: int = Field(description="Invited before: sent nothing again.")
    not_consented: int = Field(description="Customers who have not agreed to invitations.")


def _out(
    session: Session, initiative: Initiative, model: type[InitiativeOut] = InitiativeOut, **extra
) -> Any:
    assert initiative.id is not None
    owner = session.get(Colleague, initiative.owner_id) if initiative.owner_id else None
    took_part = participation(session=session, initiative_id=initiative.id)
    return model(
        id=initiative.id,
        title=initiative.title,
        description=initiative.description,
        improvement_id=initiative.improvement_id,
        owner_email=owner.email if owner else None,
        created_at=initiative.created_at,
        participation=_tally(took_part.total),
        customers=_tally(took_part.customers),
        partners=_tally(took_part.partners),
        url=initiative_url(initiative.id),
        **extra,
    )


def _detail(initiative_id: int) -> InitiativeDetail:
    with Session(get_engine()) as session:
        initiative = get_initiative(session=session, initiative_id=initiative_id)
        invitations = [
            InvitationOut(
                id=row.invitation.id or 0,
                kind=row.kind,
                customer_id=row.invitation.customer_id,
                partner_id=row.invitation.partner_id,
                name=row.name,
                status=row.invitation.status,
                invited_at=row.invitation.created_at,
                expires_at=row.invitation.expires_at,
                answered_at=row.invitation.answered_at,
                note=row.invitation.note,
            )
            for row in invitation_rows(session=session, initiative_id=initiative_id)
        ]
        detail: InitiativeDetail = _out(
            session, initiative, InitiativeDetail, invitations=invitations
        )
        return detail


@api_router.get("/initiatives", response_model=InitiativeList)
def list_initiatives() -> InitiativeList:
    """Every initiative, newest first, with how many were invited, accepted, declined, waiting."""
    with Session(get_engine()) as session:
        rows = session.exec(select(Initiative).order_by(col(Initiative.id).desc())).all()
        return InitiativeList(items=[_out(session, row) for row in rows])


@api_router.get(
    "/initiatives/{initiative_id}", response_model=InitiativeDetail, responses={404: NOT_FOUND}
)
def read_initiative(initiative_id: Id) -> InitiativeDetail:
    """One initiative with every invitation and its answer."""
    return _detail(initiative_id)


@api_router.post("/initiatives", status_code=201, response_model=InitiativeDetail)
def create_initiative_api(
    data: InitiativeCreate, response: Response, colleague: Staff
) -> InitiativeDetail:
    """Start an initiative; you own it (and hear every answer) unless `owner_email` says who."""
    with session_scope() as session:
        initiative = _start(
            session, colleague, title=data.title, description=data.description,
            improvement_id=data.improvement_id,
            owner_email=(data.owner_email or "").strip() or None,
        )  # fmt: skip
        initiative_id = initiative.id
    assert initiative_id is not None
    response.headers["Location"] = f"/api/initiatives/{initiative_id}"
    return _detail(initiative_id)


@api_router.post(
    "/initiatives/{initiative_id}/invitations",
    response_model=InvitedOut,
    responses={403: ERRORS[403], 404: NOT_FOUND},
)
def invite_api(initiative_id: Id, data: InvitationsCreate, colleague: Staff) -> InvitedOut:
    """Invite customers and partners by email (the owner, or operations). Each is invited once:
    sending the same list again sends nothing more. An unknown email is a 422 naming it."""
    with session_scope() as session:
        initiative = get_initiative(session=session, initiative_id=initiative_id)
        check_may_invite(colleague, initiative)
        customers, partners = contacts_by_email(
            session=session,
            customer_emails=data.customer_emails,
            partner_emails=data.partner_emails,
        )
        done: Invited = invite(
            session=session,
            initiative_id=initiative_id,
            customer_ids=customers,
            partner_ids=partners,
        )
    return InvitedOut(**done.as_dict())


@api_router.post(
    "/initiatives/{initiative_id}/invitations/{invitation_id}/again",
    response_model=InitiativeDetail,
    responses={403: ERRORS[403], 404: NOT_FOUND, 409: error_response("Answered, or still open.")},
)
def invite_again_api(initiative_id: Id, invitation_id: Id, colleague: Staff) -> InitiativeDetail:
    """Invite again someone whose invitation expired unanswered (the owner, or operations): a
    new link and one new email. An answered or still open invitation is a 409 saying which."""
    _invite_again(initiative_id, invitation_id, colleague)
    return _detail(initiative_id)
