"""Help from others (C9): an owner asks a colleague for help on a case or an action item by email;
the colleague accepts or declines from a link, and the asker hears the answer."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from improve.errors import InvalidInput, LinkRefused, NotFound
from improve.settings import settings
from models import (
    ActionItem,
    ActionStatus,
    Case,
    CaseNote,
    CaseStatus,
    Channel,
    Colleague,
    HelpRequest,
    HelpStatus,
)
from models.db import utcnow
from tasks import links
from tasks.approvals import get_colleague
from tasks.lifecycle import get_improvement, note
from tasks.mail import queue_email

MAX_TEXT = 2000  # HelpRequest.message and .answer


@dataclass(frozen=True)
class Subject:
    """What the help is about, as the emails and the history name it."""

    kind: str  # "case" or "action item"
    reference: str  # CASE-7, or IMP-3 action 2
    title: str
    url: str  # the staff page where the asker sees the answer
    improvement_id: int | None  # an action item's improvement: its history and its emails
    finished: bool = False  # a closed case, an action item done or cancelled


def subject_of(session: Session, help_request: HelpRequest) -> Subject:
    return _subject(session, case_id=help_request.case_id, action_id=help_request.action_id)


def _subject(session: Session, *, case_id: int | None, action_id: int | None) -> Subject:
    if (case_id is None) == (action_id is None):
        raise InvalidInput(
            {"subject": "ask for help on one case or one action item: give exactly one of them"}
        )
    if case_id is not None:
        case = session.get(Case, case_id)
        if case is None:
            raise NotFound("case", f"CASE-{case_id}")
        return Subject(
            "case",
            case.reference,
            case.subject,
            f"{settings.base_url}/cases/{case_id}",
            None,
            finished=case.status == CaseStatus.closed,
        )
    action = session.get(ActionItem, action_id)
    if action is None:
        raise NotFound("action item", action_id)
    improvement = get_improvement(session=session, improvement_id=action.improvement_id)
    return Subject(
        "action item",
        f"{improvement.reference} action {action.position}",
        f"{action.title} (for “{improvement.title}”)",
        f"{settings.base_url}/improvements/{improvement.id}",
        improvement.id,
        finished=action.status != ActionStatus.open,
    )


def _text(value: str, field: str, errors: dict[str, str], *, required: bool) -> str:
    text = (value or "").strip()
    if required and not text:
        errors[field] = "say what you would like help with"
    elif len(text) > MAX_TEXT:
        errors[field] = f"keep it under {MAX_TEXT:,} characters (it is {len(text):,})"
    return text


def ask_for_help(
    *,
    session: Session,
    asked_by_id: int,
    helper_email: str,
    message: str,
    case_id: int | None = None,
    action_id: int | None = None,
    channel: Channel = Channel.web,
    now: datetime | None = None,
) -> HelpRequest:
    """Ask a colleague for help on a case or an action item, and queue their email with a link.

    Exactly one of `case_id` and `action_id`. Asking the same colleague about the same thing
    while they have not answered returns that request and sends nothing new. The caller commits.
    """
    now = now or utcnow()
    subject = _subject(session, case_id=case_id, action_id=action_id)
    asker = get_colleague(session, asked_by_id)
    errors: dict[str, str] = {}
    email = (helper_email or "").strip().lower()
    helper = (
        session.exec(select(Colleague).where(Colleague.email == email)).first()
        if email and "\x00" not in email  # no address holds one; PostgreSQL refuses it
        else None
    )
    if not email:
        errors["helper_email"] = "choose the colleague to ask"
    elif helper is None or not helper.active:
        errors["helper_email"] = f"no active colleague has the email {email}"
    elif helper.id == asker.id:
        errors["helper_email"] = "you cannot ask yourself for help: choose a colleague"
    text = _text(message, "message", errors, required=True)
    if subject.finished:
        state = "closed" if subject.kind == "case" else "no longer open"
        errors["subject"] = f"{subject.kind} {subject.reference} is {state}: help is not needed"
    if errors:
        raise InvalidInput(errors)
    assert helper is not None and helper.id is not None and asker.id is not None

    # One open request per helper and subject: asking again is the same request (and one email).
    open_request = session.exec(
        select(HelpRequest)
        .where(
            HelpRequest.helper_id == helper.id,
            HelpRequest.case_id == case_id,
            HelpRequest.action_id == action_id,
            HelpRequest.status == HelpStatus.asked,
            col(HelpRequest.expires_at) > now,
        )
        .order_by(col(HelpRequest.id))
    ).first()
    if open_request is not None:
        return open_request

    token, token_hash = links.new_token()
    help_request = HelpRequest(
        case_id=case_id,
        action_id=action_id,
        asked_by_id=asker.id,
        helper_id=helper.id,
        message=text,
        token_hash=token_hash,
        expires_at=now + timedelta(days=settings.help_link_expiry_days),
        created_at=now,
    )
    session.add(help_request)
    session.flush()
    assert help_request.id is not None
    queue_email(
        session=session,
        key=f"help:{help_request.id}:request",
        to=helper.email,
        template="help_request",
        context={
            "helper_name": helper.name,
            "asker_name": asker.name,
            "asker_role": asker.role,
            "asker_team": asker.team,
            "kind": subject.kind,
            "reference": subject.reference,
            "title": subject.title,
            "message": text,
            "expires_on": f"{help_request.expires_at:%Y-%m-%d}",
        },
        links={"url": links.help_url(help_request.id, token)},
        improvement_id=subject.improvement_id,
    )
    _record(
        session,
        help_request,
        subject,
        what="help asked",
        text=f"{asker.name} asked {helper.name} for help: {text}",
        actor=asker.email,
        channel=channel,
    )
    return help_request


def answer_help(
    *,
    session: Session,
    help_id: int,
    token: str,
    accept: bool,
    answer: str = "",
    now: datetime | None = None,
) -> HelpRequest:
    """Record the helper's yes or no with their note, and queue the answer to the asker.

    The link is checked here as well as by the page, and the answer is written only if the
    request is still unanswered: two posts of one link record one answer. The caller commits.
    """
    now = now or utcnow()
    help_request = links.check_help_link(session=session, help_id=help_id, token=token, now=now)
    errors: dict[str, str] = {}
    text = _text(answer, "answer", errors, required=False)
    if errors:
        raise InvalidInput(errors)
    status = HelpStatus.accepted if accept else HelpStatus.declined
    result = session.exec(
        update(HelpRequest)
        .where(col(HelpRequest.id) == help_id, col(HelpRequest.status) == HelpStatus.asked)
        .values(status=status, answer=text, answered_at=now)
    )
    if result.rowcount != 1:  # another post of this link answered between the check and here
        raise LinkRefused(
            "used", "This link has already been used: the request for help was just answered.", 410
        )
    session.refresh(help_request)
    subject = subject_of(session, help_request)
    helper = get_colleague(session, help_request.helper_id)
    asker = get_colleague(session, help_request.asked_by_id)
    context: dict[str, Any] = {
        "asker_name": asker.name,
        "helper_name": helper.name,
        "accepted": accept,
        "answer": text,
        "kind": subject.kind,
        "reference": subject.reference,
        "title": subject.title,
        "message": help_request.message,
        "url_status": subject.url,
    }
    queue_email(
        session=session,
        key=f"help:{help_id}:answer",
        to=asker.email,
        template="help_answer",
        context=context,
        improvement_id=subject.improvement_id,
    )
    said = f": {text}" if text else ""
    _record(
        session,
        help_request,
        subject,
        what=f"help {status}",
        text=f"{helper.name} {status} the request for help{said}",
        actor=helper.email,
        channel=Channel.email,
    )
    return help_request


def _record(
    session: Session,
    help_request: HelpRequest,
    subject: Subject,
    *,
    what: str,
    text: str,
    actor: str,
    channel: Channel,
) -> None:
    """The audit trail: a case note on a case, a history row on an action item's improvement."""
    if help_request.case_id is not None:
        session.add(
            CaseNote(
                case_id=help_request.case_id,
                what=what,
                note=text[:2000],
                actor=actor,
                channel=channel,
            )
        )
    elif subject.improvement_id is not None:
        improvement = get_improvement(session=session, improvement_id=subject.improvement_id)
        note(
            session=session,
            improvement_id=subject.improvement_id,
            status=improvement.status,
            actor=actor,
            channel=channel,
            reason=f"{subject.reference}: {text}",
        )


# --- what pages show -------------------------------------------------------------------------


@dataclass
class HelpView:
    request: HelpRequest
    asked_by: Colleague | None
    helper: Colleague | None


@dataclass
class HelpPanel:
    """What templates/web/_help.html shows for one case or action item."""

    requests: list[HelpView]
    action: str  # where its form posts: /cases/{id}/help or /actions/{id}/help
    anchor: str  # a unique id on the page: help-case-7, help-action-12
    colleagues: list[Colleague]  # whom the signed-in colleague may ask
    now: datetime  # to tell a link still waiting from one that expired unanswered


def help_panel(
    *,
    session: Session,
    signed_in_id: int | None,
    case_id: int | None = None,
    action_id: int | None = None,
    colleagues: list[Colleague] | None = None,
) -> HelpPanel:
    """The help asked on one case or action item, newest first, and whom one could ask.

    Pass `colleagues` (active, by name) when building several panels for one page.
    """
    if (case_id is None) == (action_id is None):
        raise ValueError("help_panel needs exactly one of case_id and action_id")
    if case_id is not None:
        where = col(HelpRequest.case_id) == case_id
    else:
        where = col(HelpRequest.action_id) == action_id
    requests = session.exec(
        select(HelpRequest).where(where).order_by(col(HelpRequest.id).desc())
    ).all()
    if colleagues is None:
        colleagues = active_colleagues(session)
    people = {c.id: c for c in colleagues}
    missing = {r.asked_by_id for r in requests} | {r.helper_id for r in requests}
    for colleague_id in missing - set(people):
        found = session.get(Colleague, colleague_id)
        if found is not None:
            people[colleague_id] = found
    kind, key = ("case", case_id) if case_id is not None else ("action", action_id)
    return HelpPanel(
        requests=[
            HelpView(r, people.get(r.asked_by_id), people.get(r.helper_id)) for r in requests
        ],
        action=f"/{'cases' if kind == 'case' else 'actions'}/{key}/help",
        anchor=f"help-{kind}-{key}",
        colleagues=[c for c in colleagues if c.id != signed_in_id],
        now=utcnow(),
    )


def active_colleagues(session: Session) -> list[Colleague]:
    return list(
        session.exec(
            select(Colleague).where(col(Colleague.active).is_(True)).order_by(col(Colleague.name))
        ).all()
    )
