"""The invitation link: GET (and HEAD) shows the initiative with Accept and Decline and changes
nothing, as mail scanners open every link; a POST from the page records the answer."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from sqlmodel import Session
from starlette.responses import HTMLResponse

from improve.errors import InvalidInput
from models import Customer, Invitation
from models.db import get_engine
from tasks.links import check_invitation_link
from tasks.mail import reader_for
from tasks.participation import answer, get_initiative, invitee_name
from web.forms import Id
from web.limits import check_guesses
from web.render import page

# Public: the token is the permission, so refused ones count as guesses (web/limits.py).
router = APIRouter(include_in_schema=False, dependencies=[Depends(check_guesses)])


def _welsh(session: Session, invitation: Invitation) -> bool:
    """Whether the invited reads Welsh: a customer whose emails are in Welsh (the same rule,
    tasks.mail.reader_for); partners read English, as their emails are."""
    if invitation.customer_id is None:
        return False
    return reader_for(session.get(Customer, invitation.customer_id)).language == "cy"


def _page(
    request: Request, session: Session, invitation: Invitation, name: str, **shown: Any
) -> HTMLResponse:
    """`name`.html, or `name`.cy.html for a reader of Welsh, with the invitation's context."""
    welsh = _welsh(session, invitation)
    context = {**_context(session, invitation), **shown}
    status_code = 422 if context["errors"] else 200
    if welsh and "decision" in context["errors"]:
        context["errors"] = {**context["errors"], "decision": "Dewiswch Derbyn neu Gwrthod."}
    template = f"{name}.cy.html" if welsh else f"{name}.html"
    return page(request, template, context, status_code=status_code, private=True)


def _context(session: Session, invitation: Invitation) -> dict[str, Any]:
    return {
        "invitation": invitation,
        "initiative": get_initiative(session=session, initiative_id=invitation.initiative_id),
        "name": invitee_name(session, invitation),
        "partner": invitation.partner_id is not None,
        "errors": {},
        "values": {"note": ""},
    }


@router.api_route("/invitations/{invitation_id}/{token}", methods=["GET", "HEAD"])
def show_invitation(request: Request, invitation_id: Id, token: str) -> HTMLResponse:
    """The initiative, with Accept and Decline; changes nothing."""
    with Session(get_engine()) as session:
        invitation = check_invitation_link(
            session=session, invitation_id=invitation_id, token=token
        )
        return _page(request, session, invitation, "invitation")


@router.post("/invitations/{invitation_id}/{token}")
def answer_invitation(
    request: Request,
    invitation_id: Id,
    token: str,
    decision: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Record Accept or Decline with the optional note; the owner hears of it by email."""
    with Session(get_engine()) as session:
        invitation = check_invitation_link(
            session=session, invitation_id=invitation_id, token=token
        )
        errors: dict[str, str] = {}
        if decision not in ("accept", "decline"):
            errors["decision"] = "Please choose Accept or Decline."
        else:
            try:
                invitation = answer(
                    session=session,
                    invitation_id=invitation_id,
                    token=token,
                    accept=decision == "accept",
                    note=note,
                )
            except InvalidInput as exc:
                session.rollback()
                errors = dict(exc.errors)
        if errors:
            return _page(
                request, session, invitation, "invitation", errors=errors, values={"note": note}
            )
        session.commit()
        return _page(request, session, invitation, "invitation_done")
