"""The customer's choice link: GET shows the alternatives offered and changes nothing; a POST
from the page accepts one or declines them all. Committed first, then announced."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from sqlmodel import Session, col, select
from starlette.background import BackgroundTask
from starlette.responses import HTMLResponse

from improve import events
from improve.errors import InvalidInput
from models import Case, Colleague, Customer, OutboxEmail, OutboxStatus
from models.db import get_engine
from tasks.choices import accept_alternative, decline_alternatives, offered
from tasks.links import check_choice_link
from tasks.offers import customer_lines
from tasks.outbox import send_due
from web.forms import Id
from web.limits import check_guesses
from web.render import page

# Public: the token is the permission, so refused ones count as guesses (web/limits.py).
router = APIRouter(include_in_schema=False, dependencies=[Depends(check_guesses)])


def _context(session: Session, case: Case) -> dict[str, Any]:
    customer = session.get(Customer, case.customer_id)
    owner = session.get(Colleague, case.owner_id)
    return {
        "case": case,
        "customer_name": customer.name if customer else "",
        "owner_name": owner.name if owner else "Customer Service",
        "options": [customer_lines(session, a) for a in offered(session, case)],
        "errors": {},
        "values": {"alternative": "", "note": ""},
    }


@router.api_route("/choices/{case_id}/{token}", methods=["GET", "HEAD"])
def show_choices(request: Request, case_id: Id, token: str) -> HTMLResponse:
    """The alternatives offered, with Accept and Decline; changes nothing (scanners open links)."""
    with Session(get_engine()) as session:
        case = check_choice_link(session=session, case_id=case_id, token=token)
        return page(request, "choice.html", _context(session, case), private=True)


@router.post("/choices/{case_id}/{token}")
def choose(
    request: Request,
    case_id: Id,
    token: str,
    decision: Annotated[str, Form()] = "",
    alternative: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Accept the chosen alternative, or decline with a note; commit, then announce."""
    with Session(get_engine()) as session:
        case = check_choice_link(session=session, case_id=case_id, token=token)
        errors: dict[str, str] = {}
        choice = None
        try:
            if decision == "accept":
                wanted = int(alternative) if alternative.isdigit() else None
                choice = accept_alternative(
                    session=session, case_id=case_id, token=token, alternative_id=wanted
                )
            elif decision == "decline":
                choice = decline_alternatives(
                    session=session, case_id=case_id, token=token, note=note
                )
            else:
                errors["decision"] = "Please choose an option, or tell us none of them suits you."
        except InvalidInput as exc:
            session.rollback()
            errors = dict(exc.errors)
        if errors or choice is None:
            context = _context(session, case)
            context.update(errors=errors, values={"alternative": alternative, "note": note})
            return page(request, "choice.html", context, status_code=422, private=True)
        session.commit()
        session.refresh(case)
        context = _context(session, case)
        context.update(
            accepted=customer_lines(session, choice.accepted) if choice.accepted else None,
            note=note.strip(),
        )
        emails = queued_for(session, case_id)
    if choice.improvement_id is not None:
        events.emit(
            events.ALTERNATIVE_ACCEPTED,
            improvement_id=choice.improvement_id,
            related=[("case", f"improve.case.{case_id}")],
            payload={"case_id": case_id, "alternative_id": choice.accepted.id},  # type: ignore[union-attr]
        )
    response = page(request, "choice_done.html", context, private=True)
    # The owner's email goes now rather than with the next sweep: a customer is waiting.
    response.background = BackgroundTask(send_due, only=emails) if emails else None
    return response


def queued_for(session: Session, case_id: int) -> list[int]:
    """The case's emails still waiting in the outbox (keys start with "case:<id>:")."""
    return [
        i
        for i in session.exec(
            select(OutboxEmail.id).where(
                col(OutboxEmail.idempotency_key).startswith(f"case:{case_id}:"),
                OutboxEmail.status == OutboxStatus.queued,
            )
        ).all()
        if i is not None
    ]
