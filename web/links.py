"""Pages behind the links in emails: decide an approval, complete an action, answer a request for
help, unsubscribe.

GET and HEAD only show (mail scanners open every link); a POST from the page acts. The database is
committed before the event is emitted, so a flow started by the event sees the decision.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from pydantic import ValidationError
from sqlmodel import Session, select
from starlette.responses import HTMLResponse

from improve import events
from improve.errors import InvalidInput
from improve.formatting import payback_months
from models import (
    ActionItem,
    ApprovalRequest,
    ApprovalStatus,
    Channel,
    Colleague,
    Customer,
    HelpRequest,
    Purpose,
)
from models.db import get_engine
from tasks.consent import check_unsubscribe, opt_out
from tasks.decisions import record_decision
from tasks.estimates import ActivityIn
from tasks.factors import activities
from tasks.help import answer_help, subject_of
from tasks.lifecycle import get_improvement
from tasks.links import check_action_link, check_approval_link, check_help_link
from tasks.mail import reader_for
from tasks.planning import complete_action
from tasks.routing import levels_for
from web.forms import (
    ACTIVITY_ROWS,
    ActivityRows,
    Id,
    activity_field_names,
    activity_lines,
    parse_amount,
    plain_errors,
    row_errors,
)
from web.limits import check_guesses
from web.render import page
from web.views import colleagues_by_id

# Public: the token in each address is the permission, so refused ones count as guesses.
router = APIRouter(include_in_schema=False, dependencies=[Depends(check_guesses)])

PURPOSE_TEXT = {
    Purpose.improvement_updates: "updates about improvements to the service you receive",
    Purpose.policy_news: "news about our environmental and customer service policies",
    Purpose.invitations: "invitations to take part in our initiatives",
}
MEASURED_FIELDS = {
    "measured_saving": "Saving (£)",
    "measured_kwh": "Energy saved (kWh)",
    "measured_kg_co2e": "Emissions avoided (kg CO2e)",
    "measured_kg_waste": "Waste diverted (kg)",
}


# --- approvals -------------------------------------------------------------------------------


def _approval_context(session: Session, approval: ApprovalRequest) -> dict[str, Any]:
    improvement = get_improvement(session=session, improvement_id=approval.improvement_id)
    siblings = session.exec(
        select(ApprovalRequest).where(ApprovalRequest.improvement_id == improvement.id)
    ).all()
    people = colleagues_by_id(
        session, {approval.approver_id, approval.on_behalf_of_id, improvement.submitter_id}
    )
    return {
        "approval": approval,
        "improvement": improvement,
        "approver": people.get(approval.approver_id),
        "on_behalf_of": people.get(approval.on_behalf_of_id or -1),
        "submitter": people.get(improvement.submitter_id or -1),
        "levels": levels_for(improvement, list(siblings)),
        "payback": payback_months(improvement.estimated_cost, improvement.annual_saving),
        "errors": {},
        "values": {"decision": "", "comment": ""},
    }


@router.api_route("/approvals/{approval_id}/{token}", methods=["GET", "HEAD"])
def show_approval(request: Request, approval_id: Id, token: str) -> HTMLResponse:
    """The improvement to decide, with Approve and Reject; changes nothing."""
    with Session(get_engine()) as session:
        approval = check_approval_link(session=session, approval_id=approval_id, token=token)
        return page(request, "approval.html", _approval_context(session, approval), private=True)


def _next_step(approval: ApprovalRequest, levels: int) -> str:
    """What happens after this decision; the advance-improvement flow does it."""
    if approval.status == ApprovalStatus.rejected:
        return (
            "The person who suggested it will be told it was not approved, with your comment, "
            "so they know why and what they could try instead."
        )
    if approval.level < levels:
        return (
            f"It now goes to a level {approval.level + 1} approver for the final decision; "
            "they will get their own email."
        )
    return (
        "An action plan is drawn up next, and each action owner gets an email with their part. "
        "The person who suggested it is told it was approved."
    )


@router.post("/approvals/{approval_id}/{token}")
def decide_approval(
    request: Request,
    approval_id: Id,
    token: str,
    decision: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Record Approve or Reject, commit, then announce the decision."""
    comment = comment.strip()
    with Session(get_engine()) as session:
        approval = check_approval_link(session=session, approval_id=approval_id, token=token)
        errors: dict[str, str] = {}
        if decision not in ("approve", "reject"):
            errors["decision"] = "Choose Approve or Reject."
        elif decision == "reject" and not comment:
            errors["comment"] = (
                "Please say why you are rejecting it: the person who suggested it will read this."
            )
        elif len(comment) > 2000:
            errors["comment"] = (
                f"Please keep the comment under 2,000 characters (it is {len(comment):,})."
            )
        if not errors:
            try:
                approval = record_decision(
                    session=session,
                    approval_id=approval_id,
                    approve=decision == "approve",
                    comment=comment,
                    channel=Channel.email,
                    token=token,
                )
            except InvalidInput as exc:
                session.rollback()
                errors = dict(exc.errors)
        if errors:
            context = _approval_context(session, approval)
            context.update(errors=errors, values={"decision": decision, "comment": comment})
            return page(request, "approval.html", context, status_code=422, private=True)
        session.commit()
        context = _approval_context(session, approval)
        context["next_step"] = _next_step(approval, context["levels"])
        improvement_id, approver_id = approval.improvement_id, approval.approver_id
        payload: dict[str, object] = {
            "approval_id": approval.id,
            "decision": str(approval.status),
            "level": approval.level,
        }
    events.emit(
        events.APPROVAL_DECIDED,
        improvement_id=improvement_id,
        related=[("approver", f"improve.colleague.{approver_id}")],
        payload=payload,
    )
    return page(request, "approval_done.html", context, private=True)


# --- action items ----------------------------------------------------------------------------


def _action_context(session: Session, action: ActionItem) -> dict[str, Any]:
    improvement = get_improvement(session=session, improvement_id=action.improvement_id)
    owner = session.get(Colleague, action.owner_id) if action.owner_id else None
    return {
        "action": action,
        "improvement": improvement,
        "owner": owner,
        "fields": MEASURED_FIELDS,
        "field_names": {**MEASURED_FIELDS, **activity_field_names(), "note": "Result note"},
        "activities": activities(),
        "activity_count": ACTIVITY_ROWS,
        "errors": {},
        "values": ActionForm().model_dump(),
    }


@router.api_route("/actions/{action_id}/{token}", methods=["GET", "HEAD"])
def show_action(request: Request, action_id: Id, token: str) -> HTMLResponse:
    """The action item, with a form for its measured result; changes nothing."""
    with Session(get_engine()) as session:
        action = check_action_link(session=session, action_id=action_id, token=token)
        return page(request, "action.html", _action_context(session, action), private=True)


class ActionForm(ActivityRows):
    """The action page's form as typed: measured figures, or measured activity, and a note."""

    measured_saving: str = ""
    measured_kwh: str = ""
    measured_kg_co2e: str = ""
    measured_kg_waste: str = ""
    note: str = ""


@router.post("/actions/{action_id}/{token}")
def complete_action_item(
    request: Request, action_id: Id, token: str, form: Annotated[ActionForm, Form()]
) -> HTMLResponse:
    """Mark the item done with what was measured, commit, then announce it."""
    raw = {name: getattr(form, name) for name in MEASURED_FIELDS}
    note = form.note.strip()
    errors: dict[str, str] = {}
    numbers = {name: parse_amount(value, name, errors) for name, value in raw.items()}
    if len(note) > 2000:
        errors["note"] = f"Please keep the note under 2,000 characters (it is {len(note):,})."
    lines, rows = activity_lines(form, errors)
    measured: list[ActivityIn] = []
    for line, row in zip(lines, rows, strict=True):
        try:
            measured.append(ActivityIn.model_validate(line))
        except ValidationError as exc:
            errors.update(row_errors(plain_errors(exc.errors(), skip=()), [row]))
    with Session(get_engine()) as session:
        action = check_action_link(session=session, action_id=action_id, token=token)
        if not errors:
            owner = session.get(Colleague, action.owner_id) if action.owner_id else None
            try:
                action = complete_action(
                    session=session,
                    action_id=action_id,
                    by=owner.email if owner else "action link",
                    note=note,
                    channel=Channel.email,
                    token=token,
                    activities=measured,
                    **numbers,
                )
            except InvalidInput as exc:  # a missing factor names its line: activities[n].activity
                session.rollback()
                errors = row_errors(exc.errors, rows)
        if errors:
            context = _action_context(session, action)
            context.update(errors=errors, values={**form.model_dump(), "note": note})
            return page(request, "action.html", context, status_code=422, private=True)
        session.commit()
        context = _action_context(session, action)
        improvement_id, owner_id = action.improvement_id, action.owner_id
    related = [("action", f"improve.action.{action_id}")]
    if owner_id is not None:
        related.append(("owner", f"improve.colleague.{owner_id}"))
    events.emit(
        events.ACTION_COMPLETED,
        improvement_id=improvement_id,
        related=related,
        payload={"action_id": action_id},
    )
    return page(request, "action_done.html", context, private=True)


# --- help from a colleague ------------------------------------------------------------------


def _help_context(session: Session, help_request: HelpRequest) -> dict[str, Any]:
    people = colleagues_by_id(session, {help_request.asked_by_id, help_request.helper_id})
    return {
        "help": help_request,
        "subject": subject_of(session, help_request),
        "asker": people.get(help_request.asked_by_id),
        "helper": people.get(help_request.helper_id),
        "errors": {},
        "values": {"answer": ""},
    }


@router.api_route("/help/{help_id}/{token}", methods=["GET", "HEAD"])
def show_help(request: Request, help_id: Id, token: str) -> HTMLResponse:
    """What the colleague is asked, with Accept and Decline; changes nothing."""
    with Session(get_engine()) as session:
        help_request = check_help_link(session=session, help_id=help_id, token=token)
        return page(request, "help.html", _help_context(session, help_request), private=True)


@router.post("/help/{help_id}/{token}")
def answer_help_request(
    request: Request,
    help_id: Id,
    token: str,
    decision: Annotated[str, Form()] = "",
    answer: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Record Accept or Decline with the optional note; the asker is emailed the answer."""
    answer = answer.strip()
    with Session(get_engine()) as session:
        help_request = check_help_link(session=session, help_id=help_id, token=token)
        errors: dict[str, str] = {}
        if decision not in ("accept", "decline"):
            errors["decision"] = "Choose Accept or Decline."
        if not errors:
            try:
                help_request = answer_help(
                    session=session,
                    help_id=help_id,
                    token=token,
                    accept=decision == "accept",
                    answer=answer,
                )
            except InvalidInput as exc:
                session.rollback()
                errors = dict(exc.errors)
        if errors:
            context = _help_context(session, help_request)
            context.update(errors=errors, values={"answer": answer})
            return page(request, "help.html", context, status_code=422, private=True)
        session.commit()
        return page(request, "help_done.html", _help_context(session, help_request), private=True)


# --- unsubscribe -----------------------------------------------------------------------------


# What each purpose is called on the unsubscribe page, in each language customers read.
PURPOSE_TEXT_CY = {
    Purpose.improvement_updates: "diweddariadau am welliannau i'r gwasanaeth a gewch",
    Purpose.policy_news: "newyddion am ein polisïau amgylcheddol a gwasanaeth cwsmeriaid",
    Purpose.invitations: "gwahoddiadau i gymryd rhan yn ein mentrau",
}


def _unsubscribe_page(
    request: Request, customer: Customer | None, purpose: Purpose, done: bool
) -> HTMLResponse:
    """The page in the language the customer's emails are in (the same rule, tasks.mail)."""
    welsh = reader_for(customer).language == "cy"
    return page(
        request,
        "unsubscribe.cy.html" if welsh else "unsubscribe.html",
        {"purpose_text": (PURPOSE_TEXT_CY if welsh else PURPOSE_TEXT)[purpose], "done": done},
        private=True,
    )


@router.api_route("/unsubscribe/{customer_id}/{purpose}/{token}", methods=["GET", "HEAD"])
def show_unsubscribe(request: Request, customer_id: Id, purpose: str, token: str) -> HTMLResponse:
    """Ask to confirm; changes nothing (mail scanners open links)."""
    with Session(get_engine()) as session:
        customer, wanted = check_unsubscribe(
            session=session, customer_id=customer_id, purpose=purpose, token=token
        )
        return _unsubscribe_page(request, customer, wanted, done=False)


@router.post("/unsubscribe/{customer_id}/{purpose}/{token}")
def unsubscribe(request: Request, customer_id: Id, purpose: str, token: str) -> HTMLResponse:
    """Opt out: from the confirm page, or a mail client's RFC 8058 one-click POST."""
    with Session(get_engine()) as session:
        customer = opt_out(session=session, customer_id=customer_id, purpose=purpose, token=token)
        session.commit()
        return _unsubscribe_page(request, customer, Purpose(purpose), done=True)
