"""Staff side of "cannot meet": the alternatives panel of a case page and its form.

The case page includes templates/web/_alternatives.html with `alternatives_panel(...)` in its
context under the name "alternatives_panel"; /cases/{id}/alternatives shows the panel alone.
"""

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from sqlmodel import Session, col, select
from starlette.background import BackgroundTask
from starlette.responses import HTMLResponse, RedirectResponse, Response

from improve import events
from improve.errors import Forbidden, InvalidInput
from models import Access, Alternative, Case, Channel, Colleague, Improvement, Partner
from models.db import get_engine
from tasks.alternatives import (
    MARKABLE,
    AlternativeIn,
    mark_cannot_meet,
)
from tasks.cases import get_case
from tasks.offers import cost_benefit_summary, provider_name
from tasks.outbox import send_due
from web.auth import Staff
from web.choices import queued_for
from web.forms import Id
from web.render import page

router = APIRouter(include_in_schema=False)

SLOTS = 3  # blank alternatives the form offers; rows left blank are ignored
FIELDS = ("description", "partner_email", "cost", "benefit", "days_to_deliver")


@dataclass
class Row:
    alternative: Alternative
    provider: str
    summary: str
    improvement: Improvement | None


@dataclass
class Panel:
    """What _alternatives.html shows: the alternatives with their status, and the form."""

    case: Case
    rows: list[Row]
    partners: list[Partner]
    can_mark: bool
    slots: list[int]
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)


def may_mark(colleague: Colleague, case: Case) -> bool:
    """The case's owner, or operations, may say its need cannot be met."""
    return colleague.id == case.owner_id or Access(colleague.access).includes(Access.operations)


def alternatives_panel(
    session: Session,
    case_id: int,
    colleague: Colleague,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Panel:
    """The panel for one case, for the case page (or this module's own page)."""
    case = get_case(session=session, case_id=case_id)
    alternatives = session.exec(
        select(Alternative)
        .where(Alternative.case_id == case_id)
        .order_by(col(Alternative.position))
    ).all()
    rows = []
    for alternative in alternatives:
        provider = provider_name(session, alternative)
        improvement = (
            session.get(Improvement, alternative.improvement_id)
            if alternative.improvement_id
            else None
        )
        rows.append(
            Row(alternative, provider, cost_benefit_summary(alternative, provider), improvement)
        )
    values = values or {}
    filled = [n for n in range(1, 21) if any(values.get(f"alternatives.{n}.{f}") for f in FIELDS)]
    return Panel(
        case=case,
        rows=rows,
        partners=list(session.exec(select(Partner).order_by(col(Partner.name))).all()),
        can_mark=case.status in MARKABLE and may_mark(colleague, case),
        slots=list(range(1, max([SLOTS, *filled]) + 1)),
        errors=errors or {},
        values=values,
    )


@router.get("/cases/{case_id}/alternatives")
def alternatives_page(request: Request, case_id: Id, colleague: Staff) -> HTMLResponse:
    """A case's alternatives with their status and summary, and the cannot-meet form."""
    with Session(get_engine()) as session:
        panel = alternatives_panel(session, case_id, colleague)
        return page(request, "alternatives.html", {"alternatives_panel": panel})


@router.post("/cases/{case_id}/cannot-meet")
async def cannot_meet(request: Request, case_id: Id, colleague: Staff) -> Response:
    """Record the reason and alternatives; route those beyond the owner's authority; offer the
    rest. Committed first, then the submitted improvements are announced."""
    form = await request.form()
    values = {name: str(value) for name, value in form.items() if name != "csrf_token"}
    proposed = []
    for n in range(1, 21):
        raw = {f: values.get(f"alternatives.{n}.{f}", "").strip() for f in FIELDS}
        if any(raw.values()):
            proposed.append(AlternativeIn(**raw))
    with Session(get_engine()) as session:
        case = get_case(session=session, case_id=case_id)
        if not may_mark(colleague, case):
            raise Forbidden(
                f"Only the owner of {case.reference} or operations may say its need cannot be "
                f"met; you are signed in as {colleague.name}."
            )
        try:
            marked = mark_cannot_meet(
                session=session,
                case_id=case_id,
                reason=values.get("reason", ""),
                alternatives=proposed,
                actor=colleague.email,
                channel=Channel.web,
            )
        except InvalidInput as exc:
            session.rollback()
            # Errors are numbered as the rows were sent; blank rows were skipped before them.
            panel = alternatives_panel(
                session, case_id, colleague, errors=_renumber(exc.errors, values), values=values
            )
            return page(
                request, "alternatives.html", {"alternatives_panel": panel}, status_code=422
            )
        session.commit()
        emails = queued_for(session, case_id)
        submitter_id = case.owner_id
    for improvement_id in marked.submitted:
        events.emit_submitted(
            improvement_id=improvement_id, submitter_id=submitter_id, channel=Channel.web
        )
    response = RedirectResponse(f"/cases/{case_id}#alternatives", status_code=303)
    if emails:  # an offer made at once goes now, not with the next sweep
        response.background = BackgroundTask(send_due, only=emails)
    return response


def _renumber(errors: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    """alternatives.<k>.x of the k-th filled row → the form's own row number."""
    filled = [n for n in range(1, 21) if any(values.get(f"alternatives.{n}.{f}") for f in FIELDS)]
    out: dict[str, str] = {}
    for key, message in errors.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) <= len(filled):
            row = filled[int(parts[1]) - 1]
            key = f"alternatives.{row}.{parts[2]}"
            message = message.replace(f"alternative {parts[1]}", f"alternative {row}", 1)
        out[key] = message
    return out


def panel_context(session: Session, case_id: int, colleague: Colleague) -> dict[str, Any]:
    """What the case page adds to its context to include _alternatives.html."""
    return {"alternatives_panel": alternatives_panel(session, case_id, colleague)}
